"""Fisher geometry of the class-Gaussian model against closed forms computed here, VIV(t) = mmse(t)/(1−t)², and
FI/FIR/mmse from the exact optimal velocity of a Gaussian."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from raysweep.metrics import VelocityAmbiguity, run_accumulator
from raysweep.metrics.model import GaussianFisher, VelocityFisher, fisher_information_rate

C, H, W = 2, 2, 2
D = C * H * W


def kronecker_gaussian(n: int, seed: int = 0) -> tuple[SimpleNamespace, np.ndarray]:
    """One class of N(0, Σ_s ⊗ Σ_c) latents with unit per-channel variance (so standardisation is ~identity);
    returns the batch and the true eigenvalues of Σ."""
    rng = np.random.default_rng(seed)
    sigma_c = np.array([[1.0, 0.6], [0.6, 1.0]])
    a = rng.normal(size=(H * W, H * W))
    sigma_s = a @ a.T + H * W * np.eye(H * W)
    sigma_s /= np.diag(sigma_s).mean()
    sigma_s = sigma_s / np.sqrt(np.outer(np.diag(sigma_s), np.diag(sigma_s)))  # unit diagonal
    x = rng.normal(size=(n, C, H * W))
    x = np.linalg.cholesky(sigma_c) @ x @ np.linalg.cholesky(sigma_s).T  # X = L_c E L_sᵀ: cov Σ_s ⊗ Σ_c
    lams = np.outer(np.linalg.eigvalsh(sigma_c), np.linalg.eigvalsh(sigma_s)).ravel()
    batch = SimpleNamespace(sample_id=np.arange(n), label=np.zeros(n, np.int64),
                            latent=x.reshape(n, C, H, W).astype(np.float32), fg_mask=None)
    return batch, lams


def closed_forms(lams: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    k = (1 - t[:, None]) ** 2 + t[:, None] ** 2 * lams
    return {"fi": (1 / k).sum(1) / D, "mmse": (lams * (1 - t[:, None]) ** 2 / k).sum(1) / D}


def test_gaussian_fisher_curves_match_the_closed_forms():
    batch, lams = kronecker_gaussian(6000)
    metric = GaussianFisher(t_points=40, t_max=0.9)
    values = run_accumulator(metric, [batch])
    t = values["latent/fisher/fi_t_grid"]
    exact = closed_forms(lams, t)
    np.testing.assert_allclose(values["latent/fisher/fi_t"], exact["fi"], rtol=0.03)
    np.testing.assert_allclose(values["latent/fisher/mmse_t"], exact["mmse"], rtol=0.03)
    fine = np.linspace(0, 0.9, 9001)  # FIR against central differences of the closed-form FI
    dfi = np.gradient(closed_forms(lams, fine)["fi"], fine)
    np.testing.assert_allclose(values["latent/fisher/fir_t"], np.interp(t, fine, dfi), atol=0.03 * np.abs(dfi).max())
    integral = quad(lambda s: closed_forms(lams, np.array([s]))["mmse"][0], 0, 1)[0]
    assert values["latent/fisher/mmse"] == pytest.approx(integral, rel=0.03)
    assert values["latent/fisher/fisher_classes_skipped"] == 0


def test_the_analytic_fisher_rate_is_the_derivative_of_fi():
    lams = np.array([0.01, 0.3, 1.0, 5.0])
    fine = np.linspace(0, 0.99, 99001)
    fi = (1 / ((1 - fine[:, None]) ** 2 + fine[:, None] ** 2 * lams)).sum(1)
    t = np.linspace(0.05, 0.95, 10)
    np.testing.assert_allclose(fisher_information_rate(lams, t), np.interp(t, fine, np.gradient(fi, fine)), rtol=1e-5)


def test_viv_curve_is_mmse_over_one_minus_t_squared():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 120)
    latent = rng.normal(size=(120, 3, 4, 4)) * rng.uniform(0.2, 2, size=(1, 3, 4, 4)) + labels[:, None, None, None]
    batch = SimpleNamespace(sample_id=np.arange(120), label=labels, latent=latent.astype(np.float32), fg_mask=None)
    fisher = run_accumulator(GaussianFisher(), [batch])
    viv = run_accumulator(VelocityAmbiguity(), [batch])
    t = fisher["latent/fisher/mmse_t_grid"]
    np.testing.assert_allclose(viv["latent/velocity/viv_t_grid"], t)
    np.testing.assert_allclose(fisher["latent/fisher/mmse_t"] / (1 - t) ** 2, viv["latent/velocity/viv_t"], rtol=1e-9)


def test_gaussian_fisher_is_exact_under_any_split():
    batch, _ = kronecker_gaussian(200, seed=1)
    batch.label = np.arange(200) % 3
    metric = GaussianFisher()
    whole = run_accumulator(metric, [batch])
    parts = [SimpleNamespace(**{k: (None if v is None else v[rows]) for k, v in vars(batch).items()})
             for rows in (slice(0, 7), slice(7, 150), slice(150, 200))]
    states = [metric.update(metric.init(), p) for p in parts]
    split = metric.finalize(metric.merge(metric.merge(states[2], states[0]), states[1]))
    for key in whole:
        np.testing.assert_allclose(split[key], whole[key], rtol=1e-6, err_msg=key)


LAMS = torch.tensor([0.25, 0.5, 1.0, 2.0, 4.0, 0.5, 1.5, 3.0], dtype=torch.float64)  # diagonal Σ of 2x2x2 latents


def optimal_velocity(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E[x1 − x0 | x_t] for x1 ~ N(0, diag(LAMS)): E[x1|x_t] = t·λ/κ·x_t, v = (E[x1|x_t] − x_t)/(1−t)."""
    lam = LAMS.reshape(1, C, H, W).to(x)
    tt = t.reshape(-1, 1, 1, 1).to(x)
    kap = (1 - tt) ** 2 + tt ** 2 * lam
    return (tt * lam / kap * x - x) / (1 - tt)


def gaussian_latents(n: int) -> torch.Tensor:
    eps = torch.randn((n, C, H, W), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return eps * LAMS.sqrt().reshape(1, C, H, W)


def test_velocity_fisher_of_the_optimal_field_matches_the_closed_forms():
    n = 4000
    metric = VelocityFisher(t_points=40, t_max=0.9)
    z = gaussian_latents(n)
    values = metric.finalize(metric.update(metric.init(), z, torch.zeros(n, dtype=torch.long), np.arange(n),
                                           optimal_velocity))
    t = values["latent/fisher/dm_fi_t_grid"]
    exact = closed_forms(LAMS.numpy(), t)
    np.testing.assert_allclose(values["latent/fisher/dm_fi_t"], exact["fi"], rtol=0.03)
    np.testing.assert_allclose(values["latent/fisher/dm_mmse_t"], exact["mmse"], rtol=0.03)
    fine = np.linspace(0, 0.9, 9001)
    dfi = np.interp(t, fine, np.gradient(closed_forms(LAMS.numpy(), fine)["fi"], fine))
    np.testing.assert_allclose(values["latent/fisher/dm_fir_t"][1:-1], dfi[1:-1], rtol=0.08, atol=0.03)


def test_velocity_fisher_is_exact_under_any_split():
    n, metric = 30, VelocityFisher(t_points=5)
    z, y, ids = gaussian_latents(n), torch.zeros(n, dtype=torch.long), np.arange(100, 100 + n)
    whole = metric.finalize(metric.update(metric.init(), z, y, ids, optimal_velocity))
    states = [metric.update(metric.init(), z[r], y[r], ids[r], optimal_velocity) for r in (slice(0, 11), slice(11, n))]
    split = metric.finalize(metric.merge(states[1], states[0]))
    for key in whole:
        np.testing.assert_allclose(split[key], whole[key], rtol=1e-6, err_msg=key)
