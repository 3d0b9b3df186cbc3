"""Does a latent metric predict gFID beyond reconstruction quality? Partial correlations and a matched subset.

A metric that only tracks how well the tokenizer reconstructs (PSNR, rFID) says nothing new about diffusability;
the paper compares tokenizers of similar reconstruction quality for that reason. Two answers, both in the sign
convention of `correlation` (the metric sign-normalised, r against the raw target):

* `partial_correlate`: method `partial_pearson`, the Pearson r of metric and target after removing from both their
  linear fit on the controls (by default `recon/psnr`, `recon/rfid`): -P_xy / sqrt(P_xx P_yy) of the inverse P of
  the covariance of (metric, target, controls). The bootstrap reuses `correlate`'s resample counts (tokenizers
  drawn whole) and evaluates every resample's weighted covariance at once; p from the t test on n - 2 - k d.o.f.
* `reconstruction_matched`: the rows of tokenizers whose PSNR lies in the interquartile range of the tokenizers'
  PSNRs, the middle half, correlated as any other group.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from raysweep.analysis.correlation import CORRELATION_COLUMNS, MIN_N, cluster_resample_counts
from raysweep.analysis.tidy import DEFAULT_TARGET, perspective_of, require_columns, require_directions, signed_metric

RECONSTRUCTION_CONTROLS = ("recon/psnr", "recon/rfid")
PARTIAL_METHOD = "partial_pearson"
MATCH_COLUMN = "recon/psnr"


def partial_weighted(x: np.ndarray, y: np.ndarray, controls: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Partial Pearson r of x and y given `controls` (n, k) in each weighted sample, counts (B, n) -> (B,).

    NaN where a sample's covariance of (x, y, controls) is singular (too few distinct rows drawn)."""
    data = np.column_stack([x, y, controls])  # (n, m)
    total = counts.sum(axis=1)
    centred = data[None] - (counts @ data / total[:, None])[:, None, :]  # (B, n, m)
    cov = np.einsum("bn,bni,bnj->bij", counts, centred, centred) / total[:, None, None]
    full_rank = np.linalg.matrix_rank(cov) == data.shape[1]
    precision = np.linalg.pinv(cov, hermitian=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = -precision[:, 0, 1] / np.sqrt(precision[:, 0, 0] * precision[:, 1, 1])
    return np.clip(np.where(full_rank, r, np.nan), -1.0, 1.0)


def partial_p_value(r: float, n: int, k: int) -> float:
    """Two-sided p of a partial r from n rows given k controls: t = r sqrt(df / (1 - r^2)), df = n - 2 - k."""
    df = n - 2 - k
    if df < 1 or not np.isfinite(r):
        return float("nan")
    t = r * np.sqrt(df / max(1.0 - r * r, 1e-300))
    return float(2.0 * stats.t.sf(abs(t), df))


def partial_correlate(table: pd.DataFrame, metrics: Sequence[str], directions: Mapping[str, bool],
                      target: str = DEFAULT_TARGET, controls: Sequence[str] = RECONSTRUCTION_CONTROLS,
                      n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                      cluster: str | None = None) -> pd.DataFrame:
    """One `partial_pearson` row per metric (the controls themselves skipped), columns as `correlate`'s.

    Rows with a NaN metric, target or control are dropped per metric; fewer than k + 3 rows give NaN."""
    require_columns(table, [*metrics, target, *controls, *([cluster] if cluster else [])])
    require_directions([*metrics, target], directions)
    target_sign = 1.0 if directions[target] else -1.0
    y_all = pd.to_numeric(table[target], errors="coerce").to_numpy(dtype=float)
    z_all = table[list(controls)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    groups_all = table[cluster].astype(str).to_numpy() if cluster else np.arange(len(table))
    tail = 100.0 * (1.0 - ci) / 2.0
    rng = np.random.default_rng(seed)
    rows = []
    for metric in (m for m in metrics if m not in controls):
        x_all = signed_metric(table, metric, directions)
        keep = np.isfinite(x_all) & np.isfinite(y_all) & np.isfinite(z_all).all(axis=1)
        x, y, z, n = x_all[keep], y_all[keep], z_all[keep], int(keep.sum())
        r = p = lo = hi = np.nan
        if n >= max(MIN_N, len(controls) + 3):
            r = float(partial_weighted(x, y, z, np.ones((1, n)))[0])
            p = partial_p_value(r, n, len(controls))
            boot = partial_weighted(x, y, z, cluster_resample_counts(rng, groups_all[keep], n_boot))
            if np.isfinite(boot).any():
                lo, hi = np.nanpercentile(boot, [tail, 100.0 - tail])
        rows.append((metric, perspective_of(metric), PARTIAL_METHOD, r, p, lo, hi, n, target_sign * r))
    return pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS))


def reconstruction_matched(table: pd.DataFrame, column: str = MATCH_COLUMN,
                           tokenizer: str = "tokenizer_id") -> tuple[pd.DataFrame, str]:
    """(the rows of tokenizers whose mean `column` lies in the interquartile range over tokenizers, a label of that
    range such as "recon/psnr in [24.1, 26.3]"); no rows when the column is absent."""
    if column not in table.columns or tokenizer not in table.columns:
        return table.iloc[:0], f"{column} not in the table"
    per_tokenizer = pd.to_numeric(table[column], errors="coerce").groupby(table[tokenizer]).mean().dropna()
    low, high = np.percentile(per_tokenizer, [25, 75]) if len(per_tokenizer) else (np.nan, np.nan)
    kept = per_tokenizer.index[(per_tokenizer >= low) & (per_tokenizer <= high)]
    return table[table[tokenizer].isin(kept)], f"{column} in [{low:.4g}, {high:.4g}]"
