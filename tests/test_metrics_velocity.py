"""VIV and the Gaussian-path closed forms against closed forms, a dense reference and Monte Carlo."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from raysweep.metrics import (
    VelocityAmbiguity,
    fisher_information,
    kronecker_eigenvalues,
    kronecker_flip_flop,
    mmse,
    run_accumulator,
    viv_curve,
    viv_dense,
    viv_from_eigenvalues,
)

H = W = 4
P = H * W


def spatial_covariance(length: float) -> np.ndarray:
    """Exponential-decay covariance on the H x W grid, [P, P]."""
    r, c = np.divmod(np.arange(P), W)
    dist = np.abs(r[:, None] - r[None]) + np.abs(c[:, None] - c[None])
    return np.exp(-dist / length)


def channel_covariance(rng: np.random.Generator, c: int) -> np.ndarray:
    a = rng.normal(size=(c, c))
    return a @ a.T / c + 0.3 * np.eye(c)


def kronecker_samples(rng: np.random.Generator, n: int, sigma_c: np.ndarray, sigma_s: np.ndarray) -> np.ndarray:
    """n samples [n, C, P] with cov(X[c,p], X[d,q]) = Σ_c[c,d]·Σ_s[p,q]."""
    lc, ls = np.linalg.cholesky(sigma_c), np.linalg.cholesky(sigma_s)
    return lc @ rng.normal(size=(n, len(sigma_c), P)) @ ls.T


def true_viv(sigma_c: np.ndarray, sigma_s: np.ndarray) -> float:
    lams = np.outer(np.linalg.eigvalsh(sigma_c), np.linalg.eigvalsh(sigma_s)).ravel()
    return float(np.pi / 2 * np.sqrt(lams).sum() / lams.size)


def test_viv_matches_closed_form_on_kronecker_gaussians_after_standardisation():
    rng = np.random.default_rng(0)
    c, n, classes = 3, 400, 3
    scales = np.diag([1.0, 2.0, 0.5])  # channels on different scales
    sigma_c, sigma_s = scales @ channel_covariance(rng, c) @ scales, spatial_covariance(1.5)
    means = rng.normal(scale=2.0, size=(classes, c, P))
    latents = np.concatenate([means[k] + kronecker_samples(rng, n, sigma_c, sigma_s) for k in range(classes)])
    labels = np.repeat(np.arange(classes), n)
    # population per-channel variance over N, H, W: within-class part plus the spread of the class means
    within = np.diag(sigma_c) * np.trace(sigma_s) / P
    between = means.transpose(1, 0, 2).reshape(c, -1).var(axis=1)
    d = np.diag(1.0 / np.sqrt(within + between))
    expected = true_viv(d @ sigma_c @ d, sigma_s)

    batch = SimpleNamespace(sample_id=np.arange(len(labels)), label=labels,
                            latent=latents.reshape(-1, c, H, W).astype(np.float32), fg_mask=None)
    out = run_accumulator(VelocityAmbiguity(), [batch])
    assert out["latent/velocity/viv"] == pytest.approx(expected, rel=0.02)
    assert out["latent/velocity/viv_classes_skipped"] == 0.0
    np.testing.assert_allclose(out["latent/velocity/viv_t_grid"], np.linspace(0, 0.95, 20))


def test_flip_flop_recovers_the_kronecker_factors():
    rng = np.random.default_rng(1)
    sigma_c, sigma_s = channel_covariance(rng, 3), spatial_covariance(2.0)
    x = kronecker_samples(rng, 2000, sigma_c, sigma_s)
    est_c, est_s = kronecker_flip_flop(x, iterations=5, ridge=1e-6)
    truth, est = np.kron(sigma_s, sigma_c), np.kron(est_s, est_c)  # the scale split is arbitrary, the product not
    assert np.linalg.norm(est - truth) / np.linalg.norm(truth) < 0.05
    assert np.trace(est_s) == pytest.approx(P)


def test_kronecker_viv_agrees_with_dense_viv_on_kronecker_data():
    rng = np.random.default_rng(2)
    sigma_c, sigma_s = channel_covariance(rng, 2), spatial_covariance(1.0)
    x = kronecker_samples(rng, 3000, sigma_c, sigma_s)  # n = 3000 >> d = 32: the dense estimate is reliable
    kron = viv_from_eigenvalues(kronecker_eigenvalues(x))
    assert kron == pytest.approx(viv_dense(x), rel=0.02)
    assert kron == pytest.approx(true_viv(sigma_c, sigma_s), rel=0.02)


def test_kronecker_eigenvalues_sum_to_the_unbiased_total_variance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 2, P)) * np.array([1.0, 3.0])[:, None]  # few samples: the ridge matters, not the trace
    flat = x.reshape(7, -1)
    assert kronecker_eigenvalues(x).sum() == pytest.approx(np.trace(np.cov(flat, rowvar=False)))


def test_a_class_without_variance_has_no_velocity_ambiguity():
    x = np.ones((6, 2, P))
    assert viv_from_eigenvalues(kronecker_eigenvalues(x)) == 0.0
    assert viv_curve(kronecker_eigenvalues(x), np.array([0.0, 0.5])).tolist() == [0.0, 0.0]


def test_viv_equals_the_compactness_anisotropy_rewrite():
    lams = np.random.default_rng(4).gamma(0.5, size=50)
    d, tau, spread = lams.size, lams.sum(), np.var(np.sqrt(lams))
    assert viv_from_eigenvalues(lams) * d == pytest.approx(np.pi / 2 * np.sqrt(d * (tau - d * spread)))


def test_viv_curve_integrates_to_viv():
    lams = np.random.default_rng(5).uniform(0.05, 5.0, size=20)
    t = np.linspace(0.0, 1.0, 20001)
    assert np.trapezoid(viv_curve(lams, t), t) == pytest.approx(viv_from_eigenvalues(lams), rel=1e-5)


def test_viv_t_times_squared_noise_weight_is_the_data_mmse_per_dimension():
    lams = np.concatenate([np.random.default_rng(6).gamma(1.0, size=30), [0.0]])
    t = np.linspace(0.0, 0.99, 34)
    np.testing.assert_allclose(viv_curve(lams, t) * (1 - t) ** 2, mmse(lams, t) / lams.size, rtol=1e-12)


def test_viv_curve_and_mmse_match_monte_carlo_regression_residuals():
    """For jointly Gaussian (x_t, v) the conditional mean is the linear regression: residuals give the truth."""
    rng = np.random.default_rng(7)
    lams = np.array([0.1, 1.0, 4.0])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    n = 100_000
    x1 = 0.5 + (rng.normal(size=(n, 3)) * np.sqrt(lams)) @ q.T  # N(0.5, Q diag(λ) Qᵀ)
    x0 = rng.normal(size=(n, 3))
    for t in (0.1, 0.5, 0.9):
        xt = np.column_stack([t * x1 + (1 - t) * x0, np.ones(n)])
        for target, closed in ((x1 - x0, viv_curve(lams, t) * 3), (x1, mmse(lams, t))):
            coef, *_ = np.linalg.lstsq(xt, target, rcond=None)
            residual = np.square(target - xt @ coef).sum(axis=1).mean()
            assert residual == pytest.approx(float(closed), rel=0.02)


def test_fisher_information_matches_monte_carlo_of_the_gaussian_score():
    torch.manual_seed(0)
    rng = np.random.default_rng(8)
    lams = np.array([0.2, 1.0, 3.0])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    sigma = torch.tensor(q @ np.diag(lams) @ q.T)
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    n = 20_000
    for t in (0.2, 0.6, 0.9):
        x1 = torch.distributions.MultivariateNormal(mu, sigma).sample((n,))
        xt = (t * x1 + (1 - t) * torch.randn(n, 3, dtype=torch.float64)).requires_grad_(True)
        marginal = torch.distributions.MultivariateNormal(t * mu, t**2 * sigma + (1 - t) ** 2 * torch.eye(3))
        (score,) = torch.autograd.grad(marginal.log_prob(xt).sum(), xt)
        assert score.square().sum(dim=1).mean().item() == pytest.approx(float(fisher_information(lams, t)), rel=0.03)


def test_fisher_information_is_infinite_at_data_time_for_a_degenerate_direction():
    assert np.isinf(fisher_information(np.array([1.0, 0.0]), 1.0))
    assert mmse(np.array([1.0, 0.0]), 1.0) == 0.0


def test_small_classes_are_skipped_counted_and_warned(caplog):
    rng = np.random.default_rng(9)
    sizes = {0: 10, 1: 12, 2: 3, 3: 1}
    labels = np.concatenate([np.full(s, k) for k, s in sizes.items()])
    batch = SimpleNamespace(sample_id=np.arange(len(labels)), label=labels,
                            latent=rng.normal(size=(len(labels), 2, H, W)).astype(np.float32), fg_mask=None)
    with caplog.at_level("WARNING"):
        out = run_accumulator(VelocityAmbiguity(min_class_size=4), [batch])
    assert out["latent/velocity/viv_classes_skipped"] == 2.0
    assert "skipped 2 class(es)" in caplog.text and "{2: 3, 3: 1}" in caplog.text
    np.testing.assert_array_equal(out["latent/velocity/viv_per_class_grid"], [0, 1, 2, 3])
    per_class = out["latent/velocity/viv_per_class"]
    assert np.isnan(per_class[2:]).all()
    assert out["latent/velocity/viv"] == pytest.approx(per_class[:2].mean())  # VIV = mean over classes
    std = batch.latent.astype(np.float64).std(axis=(0, 2, 3))[:, None]
    for k in (0, 1):
        x = batch.latent[labels == k].astype(np.float64).reshape(-1, 2, P) / std
        assert per_class[k] == pytest.approx(viv_from_eigenvalues(kronecker_eigenvalues(x)), rel=1e-6)
    assert np.isnan(run_accumulator(VelocityAmbiguity(min_class_size=20), [batch])["latent/velocity/viv"])


def test_bad_parameters_raise_naming_the_values():
    with pytest.raises(ValueError, match="iterations=0"):
        VelocityAmbiguity(iterations=0)


def test_flip_flop_tolerance_stops_early_near_the_fixed_point_and_is_a_logged_param():
    rng = np.random.default_rng(3)
    x = kronecker_samples(rng, 300, channel_covariance(rng, 4), spatial_covariance(2.0))
    full = viv_from_eigenvalues(kronecker_eigenvalues(x, iterations=30, tol=0.0))
    early = viv_from_eigenvalues(kronecker_eigenvalues(x, iterations=30, tol=1e-4))
    capped = viv_from_eigenvalues(kronecker_eigenvalues(x, iterations=1, tol=0.0))
    assert abs(early / full - 1) < 1e-5 < abs(capped / full - 1)  # early stop is close; one iteration is not
    assert VelocityAmbiguity(tol=1e-6).params()["tol"] == 1e-6
    with pytest.raises(ValueError, match="tol >= 0"):
        VelocityAmbiguity(tol=-1.0)
