"""FD's sample-size bias: FD at several N extrapolated to infinite N (FD∞), and KID, which has no such bias.

FD of N samples is biased upwards, roughly FD_N ≈ FD∞ + b / N with b growing with the feature dimension (Chong &
Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them"): two tokenizers scored on
few samples can swap places on the bias alone, and an FD between two real halves of a few hundred images is
mostly bias (what the domain network's card check reports). `fd_infinity` subsamples the generated features at
several N, scores each against the fixed reference moments, fits FD_N linearly in 1/N and returns the intercept.
KID (Bińkowski et al. 2018) is the unbiased MMD² with a cubic polynomial kernel, averaged over subsets: computed
by torch-fidelity's own `kid_features_to_metric` on feature arrays.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from raysweep.features.frechet import Array, frechet_distance, sample_moments, shrink_covariance

SIZE_FRACTIONS = (0.25, 0.375, 0.5, 0.75, 1.0)  # the N of FD∞'s fit, as fractions of the generated count
MIN_SAMPLES_PER_DIM = 2  # below N = 2 D, FD_N bends away from the line in 1/N (measured: the fit goes negative)
DRAWS_PER_SIZE = 2  # random subsets averaged at each N below the full count
# torch-fidelity's subset size (1000); 10 subsets, not its 100: with N <= 1000 generated samples every subset holds
# the same generated set, so more subsets only resample the reference side (0.5 s instead of 5 s per score, D = 128)
KID_SUBSETS, KID_SUBSET_SIZE = 10, 1000


@dataclass(frozen=True)
class FDInfinity:
    """FD∞ (the fit's intercept), the slope b of FD_N = FD∞ + b / N, and the (N, FD_N) points it was fitted to."""

    fd_inf: float
    slope: float
    sizes: tuple[int, ...]
    fds: tuple[float, ...]


def fit_fd_infinity(sizes: Sequence[int], fds: Sequence[float]) -> FDInfinity:
    """Least-squares line of FD_N against 1/N over at least two distinct N; its intercept is FD∞."""
    n = np.asarray(sizes, dtype=float)
    if len(set(sizes)) < 2 or len(n) != len(fds):
        raise ValueError(f"FD∞ needs FD at two or more distinct N with one FD each, got N = {list(sizes)} and "
                         f"{len(fds)} FDs")
    slope, intercept = np.polyfit(1.0 / n, np.asarray(fds, dtype=float), 1)
    return FDInfinity(float(intercept), float(slope), tuple(int(s) for s in sizes), tuple(float(f) for f in fds))


def fd_infinity(features: Array, ref_mu: np.ndarray, ref_sigma: np.ndarray, shrinkage: float = 0.0,
                fractions: Sequence[float] = SIZE_FRACTIONS, draws: int = DRAWS_PER_SIZE,
                seed: int = 0) -> FDInfinity:
    """FD∞ of generated features [N, D] against reference moments (μ [D], Σ [D, D]), both covariances shrunk by
    `shrinkage` as the run's FD is: FD_N at N = fraction * N (mean over `draws` seeded subsets below N), fitted.
    Sizes below `MIN_SAMPLES_PER_DIM` * D are left out; with fewer than two sizes left, FD∞ is NaN."""
    x = np.asarray(features.detach().cpu().double() if torch.is_tensor(features) else features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    sigma_ref = shrink_covariance(np.asarray(ref_sigma, dtype=np.float64), shrinkage)
    smallest = max(2, MIN_SAMPLES_PER_DIM * x.shape[1])
    usable = sorted({max(smallest, round(f * len(x))) for f in fractions} & set(range(smallest, len(x) + 1)))
    if len(usable) < 2:
        return FDInfinity(float("nan"), float("nan"), tuple(usable), ())
    sizes, fds = [], []
    for size in usable:
        repeats = 1 if size == len(x) else draws
        values = []
        for _ in range(repeats):
            mu, sigma = sample_moments(x[rng.choice(len(x), size, replace=False)])
            values.append(frechet_distance(mu, shrink_covariance(sigma, shrinkage), ref_mu, sigma_ref))
        sizes.append(size)
        fds.append(float(np.mean(values)))
    return fit_fd_infinity(sizes, fds)


def kid(features_1: Array, features_2: Array, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float]:
    """(KID mean, its std over subsets) of two feature sets [N1, D], [N2, D] by torch-fidelity, with the subset size
    capped at the smaller set (torch-fidelity refuses a subset larger than a set)."""
    a, b = (torch.as_tensor(np.asarray(f, dtype=np.float32)) if not torch.is_tensor(f) else f.float()
            for f in (features_1, features_2))
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    out = kid_features_to_metric(a, b, kid_subsets=subsets, kid_subset_size=size, kid_kernel="poly",
                                 kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1,
                                 rng_seed=seed, verbose=False)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])
