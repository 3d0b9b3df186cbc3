"""Monte-Carlo VIV of the class mixture: the single-Gaussian limit and the t = 0 closed form."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from raysweep.metrics import Component, build_metric, mixture_residuals, run_accumulator, viv_curve


def gaussian_batch(labels: np.ndarray, offsets: np.ndarray, seed: int = 0) -> SimpleNamespace:
    """Latents [N, 2, 3, 3] with per-channel scales 1 and 2 and a class offset added to every coordinate."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(labels), 2, 3, 3)) * np.array([1.0, 2.0])[:, None, None]
    x = x + offsets[labels, None, None, None]
    return SimpleNamespace(sample_id=np.arange(len(labels)), label=labels, latent=x.astype(np.float32), fg_mask=None)


def test_monte_carlo_converges_to_the_analytic_viv_for_one_gaussian():
    data = gaussian_batch(np.zeros(300, int), np.zeros(1))
    analytic = run_accumulator(build_metric("viv"), [data])
    errors = []
    for samples in (64, 4096):
        out = run_accumulator(build_metric("viv_mixture", samples=samples, curve_samples=256), [data])
        value, se = out["latent/velocity/viv_mixture"], out["latent/velocity/viv_mixture_se"]
        assert abs(value - analytic["latent/velocity/viv"]) < 4 * se
        errors.append(se)
    assert errors[1] < errors[0] / 4  # 64x the draws: ~1/8 of the standard error
    curve = out["latent/velocity/viv_mixture_t"]
    np.testing.assert_allclose(curve, analytic["latent/velocity/viv_t"], rtol=0.1)


def test_at_time_zero_the_residual_is_the_total_variance_of_the_mixture():
    rng = np.random.default_rng(0)
    comps = [Component(w, np.full((1, 2), m), np.array([[lam, lam / 4]]), np.eye(1), np.eye(2))
             for w, m, lam in ((1.0, -3.0, 1.0), (3.0, 2.0, 0.25))]
    weights = np.array([c.weight for c in comps]) / 4.0
    means = np.array([c.mean for c in comps])
    centre = np.einsum("k,kcp->cp", weights, means)
    total = sum(w * (c.lam.sum() + np.square(c.mean - centre).sum()) for w, c in zip(weights, comps)) / 2
    residuals = mixture_residuals(comps, np.zeros(20_000), rng)
    assert residuals.mean() == pytest.approx(total, abs=4 * residuals.std() / np.sqrt(len(residuals)))


def test_labels_remove_ambiguity_the_mixture_adds():
    data = gaussian_batch(np.arange(200) % 2, np.array([-2.0, 2.0]))
    conditional = run_accumulator(build_metric("viv"), [data])["latent/velocity/viv"]
    out = run_accumulator(build_metric("viv_mixture", samples=512, curve_samples=2), [data])
    assert out["latent/velocity/viv_mixture"] > conditional + 4 * out["latent/velocity/viv_mixture_se"]
    assert out["latent/velocity/viv_mixture_components"] == 2.0


def test_single_gaussian_curve_matches_the_closed_form_identity():
    lams = np.array([[0.5, 2.0]])
    comp = Component(1.0, np.zeros((1, 2)), lams, np.eye(1), np.eye(2))
    t = np.full(20_000, 0.6)
    residuals = mixture_residuals([comp], t, np.random.default_rng(1))
    assert residuals.mean() == pytest.approx(float(viv_curve(lams.ravel(), np.array([0.6]))[0]), rel=0.03)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="samples >= 2"):
        build_metric("viv_mixture", samples=1)
