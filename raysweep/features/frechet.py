"""Fréchet distance between Gaussians fitted to features, in float64: our FD / FDr on any feature network.

FD = ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½. The trace term is computed from two symmetric
eigendecompositions (eigh), clipping round-off negatives to 0, so it never goes complex, unlike
tr sqrtm(Σ1 Σ2) with a general (non-symmetric) eigensolver or scipy's sqrtm.

Sample counts: a covariance needs N >= 2. With N <= D the sample covariance is singular (rank <= N − 1) and FD is
dominated by that rank deficit, so `feature_moments` refuses unless a shrinkage towards a scaled identity is asked.
"""
from __future__ import annotations

import numpy as np
import torch

MIN_SAMPLES = 2
Array = np.ndarray | torch.Tensor


def _float64(x: Array) -> np.ndarray:
    return np.asarray(x.detach().cpu().double() if torch.is_tensor(x) else x, dtype=np.float64)


def sample_moments(features: Array) -> tuple[np.ndarray, np.ndarray]:
    """features [N, D] -> (μ [D], Σ [D, D]), float64, Σ the unbiased covariance (as np.cov); N >= 2, Σ may be
    singular (what the reference cache stores; shrink it with `shrink_covariance` before an FD when N <= D)."""
    x = _float64(features)
    if x.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {x.shape}")
    if len(x) < MIN_SAMPLES:
        raise ValueError(f"{len(x)} feature vectors; a covariance needs at least {MIN_SAMPLES}")
    mu = x.mean(axis=0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def shrink_covariance(sigma: np.ndarray, shrinkage: float) -> np.ndarray:
    """Σ [D, D] -> (1 − α) Σ + α (tr Σ / D) I, α in [0, 1]: keeps the trace, makes Σ full rank for α > 0."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage}")
    if not shrinkage:
        return sigma
    d = sigma.shape[0]
    return (1 - shrinkage) * sigma + shrinkage * (np.trace(sigma) / d) * np.eye(d)


def feature_moments(features: Array, shrinkage: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """features [N, D] -> (μ [D], Σ [D, D]), float64, Σ the unbiased covariance, shrunk by α = `shrinkage`.

    ValueError for N < 2, and for N <= D without shrinkage (a singular Σ makes FD measure the rank deficit)."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage}")
    x = _float64(features)
    mu, sigma = sample_moments(x)
    n, d = x.shape
    if n <= d and shrinkage == 0.0:
        raise ValueError(f"{n} feature vectors of dimension {d}: the covariance is singular (N <= D); use more "
                         f"samples, fewer feature dimensions, or shrinkage > 0")
    return mu, shrink_covariance(sigma, shrinkage)


def _psd_eigh(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped at 0) and eigenvectors of the symmetric part of a PSD matrix."""
    values, vectors = np.linalg.eigh((sigma + sigma.T) / 2)
    return np.clip(values, 0.0, None), vectors


def frechet_distance(mu1: Array, sigma1: Array, mu2: Array, sigma2: Array) -> float:
    """FD between N(μ1, Σ1) and N(μ2, Σ2); μ [D], Σ [D, D] symmetric PSD. Symmetric in its two Gaussians."""
    mu1, mu2, sigma1, sigma2 = map(_float64, (mu1, mu2, sigma1, sigma2))
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if d < 0 or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"expected μ [D] and Σ [D, D] for one D, got μ1 {mu1.shape}, Σ1 {sigma1.shape}, "
                         f"μ2 {mu2.shape}, Σ2 {sigma2.shape}")
    values, vectors = _psd_eigh(sigma1)
    root1 = (vectors * np.sqrt(values)) @ vectors.T   # Σ1^½, symmetric
    middle, _ = _psd_eigh(root1 @ sigma2 @ root1)     # eigenvalues of Σ1^½ Σ2 Σ1^½ (same as of Σ1 Σ2)
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(middle).sum()
    return max(float(fd), 0.0)  # FD >= 0; only round-off can push it below


def feature_frechet_distance(features1: Array, features2: Array, shrinkage: float = 0.0) -> float:
    """FD between the Gaussians fitted to two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*feature_moments(features1, shrinkage), *feature_moments(features2, shrinkage))
