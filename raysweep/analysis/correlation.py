"""Correlate latent metrics with generation quality, with percentile-bootstrap confidence intervals.

Sign convention (the paper's, Figure 4 onwards): each metric is first sign-normalised so that higher means a better
latent, `signed = metric if higher_is_better else -metric`, and `r = corr(signed, target)` against the raw target.
For a lower-is-better metric this is the paper's "r of (-metric) vs gFID". Since lower gFID is better, a metric that
predicts generation quality gives r < 0 against gFID (the paper: VIV -0.87, LNC -0.79, SRSS -0.72). The column
`agreement` removes the target's direction too: `agreement = r` for a higher-is-better target and `-r` for a
lower-is-better one, so `agreement > 0` always means "a better latent goes with better generation".

Bootstrap: with `cluster="tokenizer_id"` (what the study analysis passes) a resample draws tokenizers with
replacement and takes all rows of each drawn tokenizer (its diffusion seeds, backbones) together, since the seeds of
one tokenizer share its latent metrics and are not independent observations; without it, rows are resampled.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from raysweep.analysis.correlation_methods import get_method, resample_counts
from raysweep.analysis.tidy import DEFAULT_TARGET, perspective_of, require_columns, require_directions, signed_metric
from raysweep.tracking.keys import RUN_KEYS, TOKENIZER_SEED_TAG

MIN_N = 3  # fewer paired observations than this give a NaN row rather than a meaningless coefficient
CORRELATION_COLUMNS = ("metric", "perspective", "method", "r", "p_value", "ci_low", "ci_high", "n", "agreement")


def correlate(
    table: pd.DataFrame,
    metrics: Sequence[str],
    directions: Mapping[str, bool],
    target: str = DEFAULT_TARGET,
    methods: Sequence[str] = ("pearson", "spearman", "kendall"),
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    cluster: str | None = None,
) -> pd.DataFrame:
    """One row per metric x method: r, p_value, bootstrap CI, n, agreement (see the module docstring for signs).

    Rows where the metric or the target is NaN are dropped per metric (n says how many remain). The CI is the
    percentile interval of r over `n_boot` resamples of the rows (of the `cluster` column's groups of rows when
    given: see the module docstring), drawn once per metric and shared by all methods;
    every resample is evaluated in one batched array operation, as counts of the observations (see
    `correlation_methods`). `directions` must declare every metric and the target (True = higher is better);
    nothing is inferred.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci={ci} must lie in (0, 1)")
    require_columns(table, [*metrics, target, *([cluster] if cluster else [])])
    require_directions([*metrics, target], directions)
    chosen = {name: get_method(name) for name in methods}
    target_sign = 1.0 if directions[target] else -1.0
    y_all = pd.to_numeric(table[target], errors="coerce").to_numpy(dtype=float)
    groups_all = table[cluster].astype(str).to_numpy() if cluster else np.arange(len(table))
    tail = 100.0 * (1.0 - ci) / 2.0
    rng = np.random.default_rng(seed)
    rows = []
    for metric in metrics:
        x_all = signed_metric(table, metric, directions)
        keep = np.isfinite(x_all) & np.isfinite(y_all)
        x, y = x_all[keep], y_all[keep]
        n = len(x)
        usable = n >= MIN_N and np.ptp(x) > 0 and np.ptp(y) > 0
        # (n_boot, n) resamples, as counts of each row: one conversion shared by all methods
        counts = cluster_resample_counts(rng, groups_all[keep], n_boot) if usable else None
        for name, method in chosen.items():
            r = p = lo = hi = np.nan
            if counts is not None:  # usable
                r = method.r(x, y)
                p = method.p_value(x, y)
                boot = method.weighted(x, y, counts)  # (n_boot,)
                if np.isfinite(boot).any():
                    lo, hi = np.nanpercentile(boot, [tail, 100.0 - tail])
            rows.append((metric, perspective_of(metric), name, r, p, lo, hi, n, target_sign * r))
    return pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS))


def cluster_resample_counts(rng: np.random.Generator, groups: np.ndarray, n_boot: int) -> np.ndarray:
    """(n_boot, n) counts of each row when each resample draws the k distinct `groups` (n,) with replacement and
    takes every row of a drawn group: a row counts as often as its group was drawn. One row per group is the plain
    row bootstrap (the same draws `rng.integers(0, k, (n_boot, k))` over groups in sorted order)."""
    labels, group_of_row = np.unique(groups, return_inverse=True)
    k = len(labels)
    return resample_counts(rng.integers(0, k, size=(n_boot, k)), k)[:, group_of_row]


def group_correlations(
    table: pd.DataFrame,
    by: str | Sequence[str],
    metrics: Sequence[str],
    directions: Mapping[str, bool],
    target: str = DEFAULT_TARGET,
    **correlate_kwargs: Any,
) -> pd.DataFrame:
    """`correlate` within each group (e.g. by=["backbone"], ["family"], ["cfg_scale"]); group keys lead the columns.

    Tests whether a metric's predictive power generalises across backbones / tokenizer families / guidance scales.
    """
    keys = [by] if isinstance(by, str) else list(by)
    require_columns(table, keys)
    parts = []
    for key, group in table.groupby(keys, sort=True, dropna=False):
        corr = correlate(group, metrics, directions, target, **correlate_kwargs)
        key_tuple = key if isinstance(key, tuple) else (key,)
        parts.append(corr.assign(**dict(zip(keys, key_tuple)))[[*keys, *CORRELATION_COLUMNS]])
    if not parts:
        return pd.DataFrame(columns=[*keys, *CORRELATION_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def run_keys(table: pd.DataFrame) -> list[str]:
    """The columns that identify one diffusion run: tokenizer, its seed replicate (where tracked), backbone, seed."""
    return [k for k in RUN_KEYS if k in table.columns or k != TOKENIZER_SEED_TAG]


def best_cfg_rows(
    table: pd.DataFrame,
    target: str = DEFAULT_TARGET,
    higher_is_better: bool = False,
    keys: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Each diffusion run's row at its best CFG scale (lowest gFID by default); runs with no finite target vanish.

    The paper compares tokenizers at their own best guidance, since the optimal scale differs between latents.
    A run is identified by `keys`, by default the run keys the table has (`tokenizer_seed` tells apart the seed
    replicates of one tokenizer, where a study trains them).
    """
    keys = run_keys(table) if keys is None else keys
    require_columns(table, [*keys, target])
    values = pd.to_numeric(table[target], errors="coerce")
    finite = table.loc[np.isfinite(values.to_numpy(dtype=float))]
    scores = pd.to_numeric(finite[target]) * (-1.0 if higher_is_better else 1.0)
    best = scores.groupby([finite[k] for k in keys], sort=True, dropna=False).idxmin()
    return table.loc[best.to_numpy()]


def paper_direction(r: pd.Series, agreement: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the sign of r the paper reports, "as the paper" / "OPPOSITE to the paper") per row: the paper finds a better
    latent with better generation for every metric (agreement > 0), i.e. r < 0 against gFID, r > 0 against IS."""
    target_sign = np.sign(r.astype(float) * agreement.astype(float))  # +1 higher-is-better target, -1 lower
    paper = pd.Series(np.where(target_sign < 0, "r < 0", "r > 0"), index=r.index)
    versus = pd.Series(np.where(agreement.astype(float) > 0, "as the paper", "OPPOSITE to the paper"), index=r.index)
    return paper, versus


def perspective_ranking(corr_df: pd.DataFrame, method: str = "pearson") -> pd.DataFrame:
    """The strongest metric of each perspective (largest |r| under `method`), perspectives ranked by |r|.

    Strength, not agreement with the paper, picks and orders them: a metric that goes the opposite way to the paper
    is shown as strongly as one that agrees, with `paper_sign` (the paper's sign of r) and `vs_paper` beside it
    ("as the paper" / "OPPOSITE to the paper"), never hidden behind a weaker metric that agrees.
    """
    get_method(method)
    require_columns(corr_df, ["perspective", "metric", "method", "r", "agreement"])
    rows = corr_df[(corr_df["method"] == method) & corr_df["agreement"].notna() & corr_df["r"].notna()]
    strength = rows["r"].astype(float).abs()
    best = rows.loc[strength.groupby(rows["perspective"]).idxmax()]
    ranked = best.assign(abs_r=best["r"].astype(float).abs()).sort_values("abs_r", ascending=False, kind="stable")
    paper, versus = paper_direction(ranked["r"], ranked["agreement"])
    ranked = ranked.assign(paper_sign=paper, vs_paper=versus).drop(columns="abs_r").reset_index(drop=True)
    return ranked.assign(rank=np.arange(1, len(ranked) + 1))
