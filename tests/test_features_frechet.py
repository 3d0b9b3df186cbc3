"""Fréchet distance: closed forms, symmetry, invariances, and agreement with torch-fidelity and scipy's sqrtm."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

from raysweep.features import feature_frechet_distance, feature_moments, frechet_distance


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_diagonal_gaussians_match_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_zero_for_identical_gaussians_and_features() -> None:
    rng = np.random.default_rng(1)
    sigma = _random_spd(rng, 8)
    mu = rng.normal(size=8)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-10)
    x = rng.normal(size=(50, 8))
    assert feature_frechet_distance(x, x) == pytest.approx(0.0, abs=1e-10)


def test_symmetric_and_rotation_invariant_for_non_commuting_covariances() -> None:
    rng = np.random.default_rng(2)
    mu1, mu2, s1, s2 = rng.normal(size=5), rng.normal(size=5), _random_spd(rng, 5), _random_spd(rng, 5)
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert fd > 0
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(fd, rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T) == pytest.approx(fd, rel=1e-10)


def test_matches_scipy_sqrtm_formula() -> None:
    rng = np.random.default_rng(3)
    mu1, mu2, s1, s2 = rng.normal(size=7), rng.normal(size=7), _random_spd(rng, 7), _random_spd(rng, 7)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_agrees_with_torch_fidelity_fid_on_the_same_features() -> None:
    gen = torch.Generator().manual_seed(4)
    f1 = torch.randn(300, 16, generator=gen, dtype=torch.float64)
    f2 = 0.7 * torch.randn(250, 16, generator=gen, dtype=torch.float64) @ torch.randn(16, 16, generator=gen,
                                                                                       dtype=torch.float64) + 0.3
    theirs = fid_statistics_to_metric(fid_features_to_statistics(f1), fid_features_to_statistics(f2), False)
    assert feature_frechet_distance(f1, f2) == pytest.approx(theirs[KEY_METRIC_FID], rel=1e-6)


def test_moments_match_numpy_and_accept_tensors() -> None:
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(40, 3))).float()
    mu, sigma = feature_moments(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.double().numpy(), rowvar=False), rtol=1e-12)


def test_shrinkage_keeps_the_trace_and_moves_towards_isotropy() -> None:
    x = np.random.default_rng(6).normal(size=(5, 10)) * np.arange(1, 11)
    with pytest.raises(ValueError, match="singular"):
        feature_moments(x)
    _, raw = feature_moments(x, shrinkage=1e-12)
    _, half = feature_moments(x, shrinkage=0.5)
    _, full = feature_moments(x, shrinkage=1.0)
    assert np.trace(half) == pytest.approx(np.trace(raw))
    np.testing.assert_allclose(full, np.trace(raw) / 10 * np.eye(10), atol=1e-12)
    assert np.linalg.eigvalsh(half).min() > 0


@pytest.mark.parametrize("features", [np.zeros((1, 3)), np.zeros(5), np.zeros((2, 2, 2))])
def test_rejects_too_few_samples_or_wrong_rank(features: np.ndarray) -> None:
    with pytest.raises(ValueError):
        feature_moments(features)


def test_rejects_mismatched_shapes_and_bad_shrinkage() -> None:
    with pytest.raises(ValueError, match="one D"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="shrinkage"):
        feature_moments(np.zeros((10, 2)), shrinkage=1.5)
