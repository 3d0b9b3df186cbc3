"""The proxy: gFID ~ Normal(z·β, σ²) on the normal scores z of latent / reconstruction metrics, conjugate
Normal-Inverse-Gamma prior, Student-t predictive.

Why a Bayesian linear model and not a GP or a bootstrap ensemble of `analysis/regression.py`'s OLS fits:
- the paper's evidence is linear (VIV r = 0.87, SRSS + LNC joint R² = 0.91), so the mean function needs no GP;
- allocation starts from 2-5 measured tokenizers, where bootstrap ensembles of OLS under-cover badly (resamples of
  3 rows are degenerate) while the conjugate posterior's Student-t predictive is exact for the linear-Gaussian model
  at any n, including n < number of features (the prior carries the unidentified directions, so they stay wide);
- the posterior is closed form, so refitting after every arriving result costs one (p+1)² solve, and joint draws for
  acquisition are cheap.
Why normal scores (each feature's mid-rank among *all* tokenizers, known before any diffusion run, mapped to a
standard normal quantile) and not the raw values: one outlying tokenizer (a PSNR far below the rest) otherwise sets a
feature's scale, so a slope fitted on 4-5 measured rows is spent on that one row and ranks the others by noise; on the
benchmark table with four features this (with the D-optimal calibration) cut the replayed compute to find the top-1
from 58 % to 37 % of brute force (benchmarks/RESULTS-allocation.md).
For roughly normal features the scores are the standardised values, so the paper's linear evidence still holds.
The prior is weak and scale-free: the scores are standardised over all tokenizers,
gFID over the measured ones; coefficients ~ N(0, σ² SNR/p) so the prior's explained variance does not grow with the
number of features, and σ² ~ InvGamma(A0, B0) whose guess is that the features explain nothing (conservative: a
weak proxy keeps its intervals wide and allocation moves toward brute force).
Coverage of the 90% interval on synthetic studies (86 tokenizers, held-out rows, 400 replicates): 0.90-0.93 for
r = 0.87 at 4-30 measured rows; for r = 0.3 it is 0.79-0.81 at 4 measured rows, 0.82-0.86 at 10 and 0.88 at 30 —
gFID is standardised by the measured rows' spread, which few rows underestimate. (Measured before the normal
scores; tests/test_search_proxy.py still holds 30-row coverage to 0.9 within 3 binomial standard errors.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

PRIOR_SNR = 10.0        # prior signal-to-noise variance ratio of all features together (weak: R² up to ~0.9)
INTERCEPT_SD = 10.0     # prior sd of the intercept in standardised gFID units, relative to σ (flat in practice)
A0, B0 = 0.5, 0.5      # σ² ~ InvGamma(A0, B0): one pseudo-observation saying all of gFID's variance is noise


@dataclass(frozen=True)
class Prediction:
    """Student-t predictive of gFID per row: location `mean`, `scale`, `dof` degrees of freedom. Shapes (n,)."""

    mean: np.ndarray
    scale: np.ndarray
    dof: float

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Central `level` predictive interval (lo, hi)."""
        half = stats.t.ppf(0.5 + level / 2, self.dof) * self.scale
        return self.mean - half, self.mean + half


@dataclass(frozen=True)
class Proxy:
    """A fitted posterior. `x_ref` (N, p, each column sorted) turns features into normal scores, `x_*` standardise
    those, `y_*` gFID; (m, v, a, b) is the NIG posterior over [intercept, β] in standardised units."""

    x_ref: np.ndarray
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float
    m: np.ndarray
    v: np.ndarray
    a: float
    b: float
    n: int

    def _design(self, x: np.ndarray) -> np.ndarray:
        z = (normal_scores(np.asarray(x, dtype=float), self.x_ref) - self.x_mean) / self.x_scale
        return np.column_stack([np.ones(len(z)), z])

    def predict(self, x: np.ndarray) -> Prediction:
        """Predictive gFID of rows `x` (n, p) of raw feature values: new measurements, noise included."""
        d = self._design(x)
        var = (self.b / self.a) * (1.0 + np.einsum("ij,jk,ik->i", d, self.v, d))
        return Prediction(self.y_mean + self.y_scale * d @ self.m, self.y_scale * np.sqrt(var), 2.0 * self.a)

    def draw(self, x: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
        """Joint posterior-predictive draws of gFID for rows `x`, shape (draws, n): one (σ², β) per draw, so rows
        share the uncertainty of the fit (what makes a ranking or a correlation uncertain)."""
        d = self._design(x)
        sigma2 = self.b / rng.gamma(self.a, 1.0, size=draws)
        chol = np.linalg.cholesky(self.v + 1e-12 * np.eye(len(self.m)))
        beta = self.m + np.sqrt(sigma2)[:, None] * rng.standard_normal((draws, len(self.m))) @ chol.T
        noise = np.sqrt(sigma2)[:, None] * rng.standard_normal((draws, len(d)))
        return self.y_mean + self.y_scale * (beta @ d.T + noise)


def normal_scores(x: np.ndarray, ref_sorted: np.ndarray) -> np.ndarray:
    """Each column of `x` (n, p) as the standard normal quantile of its mid-rank among the same column of
    `ref_sorted` (N, p, sorted): (rank - 1/2) / N with tied values sharing their mean rank; a value beyond the
    reference's range gets its end's score."""
    n = len(ref_sorted)
    mid = np.column_stack([np.searchsorted(r, c, "left") + np.searchsorted(r, c, "right")
                           for r, c in zip(ref_sorted.T, np.atleast_2d(x).T)]) / 2.0
    return stats.norm.ppf(np.clip(mid / n, 0.5 / n, 1.0 - 0.5 / n))


def fit_proxy(x: np.ndarray, y: np.ndarray, x_ref: np.ndarray | None = None) -> Proxy:
    """Posterior after measured rows `x` (n, p) with gFID `y` (n,); `x_ref` (all tokenizers' features) sets the
    features' normal scores (default: `x`). Rows with a non-finite value are refused, not dropped."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ref = x if x_ref is None else np.asarray(x_ref, dtype=float)
    if x.ndim != 2 or len(x) != len(y) or ref.shape[1] != x.shape[1]:
        raise ValueError(f"fit_proxy needs x (n, p), y (n,), x_ref (N, p); got {x.shape}, {y.shape}, {ref.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and np.isfinite(ref).all()):
        raise ValueError("fit_proxy needs finite features and gFID (drop incomplete tokenizers first)")
    ref = np.sort(ref, axis=0)
    ref_scores = normal_scores(ref, ref)
    x_mean, x_scale = ref_scores.mean(axis=0), ref_scores.std(axis=0)
    x_scale = np.where(x_scale > 0, x_scale, 1.0)
    y_mean = float(y.mean()) if len(y) else 0.0
    y_scale = float(y.std(ddof=1)) if len(y) > 1 and y.std() > 0 else 1.0
    p = x.shape[1]
    prior_prec = np.diag([INTERCEPT_SD ** -2, *([p / PRIOR_SNR] * p)])
    z = (normal_scores(x, ref) - x_mean) / x_scale
    d = np.column_stack([np.ones(len(z)), z])
    t = (y - y_mean) / y_scale
    precision = prior_prec + d.T @ d
    v = np.linalg.inv(precision)
    m = v @ (d.T @ t)
    a = A0 + len(t) / 2.0
    b = B0 + 0.5 * float(t @ t - m @ precision @ m)
    return Proxy(ref, x_mean, x_scale, y_mean, y_scale, m, v, a, max(b, 1e-12), len(y))


def loo_predictions(x: np.ndarray, y: np.ndarray, x_ref: np.ndarray | None = None) -> Prediction:
    """Each measured row predicted by the proxy refitted without it (held-out error for the report). Shape (n,)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~np.eye(len(y), dtype=bool)
    preds = [fit_proxy(x[k], y[k], x_ref).predict(x[i:i + 1]) for i, k in enumerate(keep)]
    return Prediction(np.concatenate([p.mean for p in preds]), np.concatenate([p.scale for p in preds]),
                      float(min(p.dof for p in preds)) if preds else float("nan"))
