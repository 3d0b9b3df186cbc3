"""Correlation coefficients computed row-wise over a batch of samples, so a bootstrap is one array operation.

Each statistic maps `x, y` of shape (B, n) — B resamples of n paired observations — to r of shape (B,). A row
with a constant variable gives NaN. p-values for the observed sample come from scipy.stats, the reference.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

KENDALL_CHUNK_ELEMENTS = 4_000_000  # bound on B_chunk * n * n for the pairwise sign tensors


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r per row: centred cross-product over the geometric mean of the sums of squares. (B, n) -> (B,)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho per row: Pearson r of average ranks (ties share their mean rank, as scipy does). (B,n)->(B,)."""
    return pearson_rows(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b per row, ties handled (bootstrap resamples repeat observations). (B, n) -> (B,).

    With `sx_ij = sign(x_i - x_j)`: tau_b = sum(sx sy) / sqrt(sum|sx| sum|sy|) over all ordered pairs, i.e.
    (concordant - discordant) / sqrt(pairs untied in x * pairs untied in y). Rows are processed in chunks so the
    (B_chunk, n, n) sign tensors stay within `KENDALL_CHUNK_ELEMENTS`.
    """
    n = x.shape[1]
    chunk = max(1, KENDALL_CHUNK_ELEMENTS // max(n * n, 1))
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], chunk):
        xs, ys = x[start:start + chunk], y[start:start + chunk]
        sx = np.sign(xs[:, :, None] - xs[:, None, :])  # (b, n, n)
        sy = np.sign(ys[:, :, None] - ys[:, None, :])  # (b, n, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + chunk] = (sx * sy).sum(axis=(1, 2)) / np.sqrt(
                np.abs(sx).sum(axis=(1, 2)) * np.abs(sy).sum(axis=(1, 2)))
    return np.clip(out, -1.0, 1.0)


@dataclass(frozen=True)
class CorrelationMethod:
    """A coefficient: the batched statistic (bootstrap + point estimate) and scipy's test for its p-value."""

    rows: Callable[[np.ndarray, np.ndarray], np.ndarray]
    test: Callable[..., object]

    def p_value(self, x: np.ndarray, y: np.ndarray) -> float:
        """Two-sided p-value of the observed sample (x, y each shape (n,)) under no association."""
        return float(self.test(x, y).pvalue)


METHODS: dict[str, CorrelationMethod] = {
    "pearson": CorrelationMethod(pearson_rows, stats.pearsonr),
    "spearman": CorrelationMethod(spearman_rows, stats.spearmanr),
    "kendall": CorrelationMethod(kendall_rows, stats.kendalltau),
}


def get_method(name: str) -> CorrelationMethod:
    """Look up a correlation method by name; ValueError lists the allowed names."""
    if name not in METHODS:
        raise ValueError(f"unknown correlation method {name!r}; allowed: {sorted(METHODS)}")
    return METHODS[name]
