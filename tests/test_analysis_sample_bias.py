"""FD's sample-size bias: FD∞ recovers the known FD of two Gaussians, KID is the unbiased MMD² by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raysweep.features.frechet import feature_frechet_distance, frechet_distance
from raysweep.features.sample_bias import fd_infinity, fit_fd_infinity, kid


def test_fit_recovers_the_intercept_of_an_exact_line() -> None:
    fit = fit_fd_infinity([100, 200, 400], [2.0 + 50.0 / n for n in (100, 200, 400)])
    assert fit.fd_inf == pytest.approx(2.0, abs=1e-12) and fit.slope == pytest.approx(50.0, abs=1e-9)
    with pytest.raises(ValueError, match="two or more distinct N"):
        fit_fd_infinity([100, 100], [1.0, 1.0])


def test_fd_infinity_on_gaussians_of_known_fd() -> None:
    """Samples of N(μ, Σ) against the exact moments of N(0, I): FD_N at N = 4000 is biased up by about tr Σ / N plus
    the covariance term; FD∞ removes most of it and lands within a small tolerance of the closed form."""
    d, n = 32, 4000
    mu = np.full(d, 0.05)
    scale = np.linspace(0.8, 1.2, d)
    true_fd = frechet_distance(mu, np.diag(scale**2), np.zeros(d), np.eye(d))  # = |μ|² + Σ (s_i - 1)²
    assert true_fd == pytest.approx(d * 0.05**2 + ((scale - 1) ** 2).sum())
    errors_n, errors_inf = [], []
    for seed in range(4):
        x = mu + scale * np.random.default_rng(seed).normal(size=(n, d))
        fit = fd_infinity(x, np.zeros(d), np.eye(d), seed=seed)
        assert fit.sizes == (1000, 1500, 2000, 3000, 4000) and fit.fds[-1] == pytest.approx(
            frechet_distance(x.mean(0), np.cov(x.T), np.zeros(d), np.eye(d)))
        assert fit.fds[0] > fit.fds[-1] and fit.slope > 0  # the bias shrinks with N
        errors_n.append(fit.fds[-1] - true_fd)
        errors_inf.append(fit.fd_inf - true_fd)
    assert np.mean(errors_n) > 0.1 * true_fd  # the full-N FD is visibly biased up
    assert abs(np.mean(errors_inf)) < 0.2 * np.mean(errors_n)  # FD∞ removes most of the bias


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Hand computation: k(a, b) = (a·b / D + 1)³, MMD²_u = mean off-diagonal k_xx + k_yy - 2 mean k_xy."""
    d, m = x.shape[1], len(x)

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / d + 1.0) ** 3

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(off - 2.0 * kxy.mean())


def test_kid_is_torch_fidelity_and_equals_the_unbiased_mmd_by_hand() -> None:
    """One subset of the full size is a permutation of each set, so KID is the full-sample unbiased MMD²."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 16)), 0.3 + rng.normal(size=(300, 16))
    mean, std = kid(x, y, subsets=1, subset_size=300)
    assert mean == pytest.approx(_unbiased_mmd2(x.astype(np.float32).astype(float), y.astype(np.float32).astype(float)),
                                 rel=1e-4)
    assert std == 0.0
    same, _ = kid(torch.as_tensor(x[:150]), torch.as_tensor(x[150:]), subsets=50, subset_size=100)
    assert abs(same) < 0.1 * mean  # unbiased: two halves of one sample score about 0, not a positive bias


def test_fd_between_real_halves_is_mostly_bias_at_small_n() -> None:
    """Why the domain card's FD(real halves) (two halves of a few hundred held-out images) is far above the study's
    FD(val, train) on thousands: the same distribution gives FD ≈ b (1/N1 + 1/N2), not 0."""
    rng = np.random.default_rng(1)
    d = 64
    small = feature_frechet_distance(rng.normal(size=(250, d)), rng.normal(size=(250, d)))
    large = feature_frechet_distance(rng.normal(size=(5000, d)), rng.normal(size=(20000, d)))
    assert small > 10 * large > 0


def test_fd_infinity_leaves_out_sizes_below_twice_the_dimension() -> None:
    x = np.random.default_rng(0).normal(size=(300, 64))
    fit = fd_infinity(x, np.zeros(64), np.eye(64))
    assert fit.sizes == (128, 150, 225, 300)  # 0.25 * 300 = 75 lifted to 2 D = 128
    assert np.isnan(fd_infinity(x[:128], np.zeros(64), np.eye(64)).fd_inf)  # every size lifted to 128: one point
