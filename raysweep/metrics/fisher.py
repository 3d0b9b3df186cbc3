"""Closed forms of the Gaussian model along the flow-matching path (METRICS.md §1 and §8).

Path `x_t = t·x1 + (1−t)·x0`, `x0 ~ N(0, I)`, `x1 ~ N(μ, Σ)`. In the eigenbasis of Σ (eigenvalues λ_i) every
coordinate is independent with `Var(x_t) = κ_i(t) = (1−t)² + t²λ_i`, which gives
`FI(t) = E‖∇ log p_t(x_t)‖² = Σ 1/κ_i`, `mmse(t) = E‖x1 − E[x1|x_t]‖² = Σ λ_i (1−t)²/κ_i` and the irreducible
velocity variance `E‖v − E[v|x_t]‖² = Σ λ_i/κ_i` (`velocity.viv_curve`).
All take eigenvalues lams [m] and times t (scalar or [T]) and return the shape of t.
"""
from __future__ import annotations

import numpy as np


def kappa(lams: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """κ(t) = (1−t)² + t²λ: per-coordinate variance of x_t, [T, m] (or [m] for scalar t)."""
    t = np.asarray(t, np.float64)[..., None]
    return np.square(1.0 - t) + np.square(t) * np.asarray(lams, np.float64)


def ratio_sum(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Σ_i num_i/den_i over the last axis, with 0/0 = 0 (a zero-variance direction at t = 1 carries nothing)."""
    num, den = np.broadcast_arrays(num, den)
    out = np.divide(num, den, out=np.zeros(num.shape), where=den > 0)
    return np.where((den == 0) & (num != 0), np.inf, out).sum(axis=-1)


def fisher_information(lams: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """FI(t) = Σ 1/κ_i(t); infinite at t = 1 when some λ_i = 0 (the marginal is degenerate there)."""
    k = kappa(lams, t)
    return ratio_sum(np.ones_like(k), k)


def mmse(lams: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """mmse(t) = Σ λ_i (1−t)²/κ_i(t): the error of the Bayes-optimal denoiser of x1 from x_t."""
    k = kappa(lams, t)
    tt = np.asarray(t, np.float64)[..., None]
    return ratio_sum(np.asarray(lams, np.float64) * np.square(1.0 - tt), k)
