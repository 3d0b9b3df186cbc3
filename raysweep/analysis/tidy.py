"""The study's tidy results table: which rows count, which columns are metrics, and which way each metric points.

The table has one row per tokenizer x backbone x seed x CFG scale; metric columns carry MLflow metric names
(`latent/<perspective>/<name>`, `recon/*`, `gen/*`, `traj/*`). Directions are never guessed: every metric that is
analysed must appear in the caller's `directions` map (True = higher is better).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

FINISHED = "FINISHED"
DEFAULT_TARGET = "gen/gfid"
METRIC_PREFIXES = ("latent/", "recon/", "gen/", "traj/")
PREDICTOR_PREFIXES = ("latent/", "recon/", "traj/")  # what is correlated with generation quality
TARGET_DIRECTIONS = {"gen/gfid": False, "gen/is": True, "gen/fdr": False}  # the targets the analysis reports
SCORE_DIRECTIONS = {  # reconstruction and trajectory scores (latent directions come from the metric registry)
    "recon/psnr": True, "recon/ssim": True, "recon/rfid": False, "recon/lpips": False,
    "traj/straightness": True, "traj/efficiency": True,
}


def split_excluded(table: pd.DataFrame, target: str = DEFAULT_TARGET) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into rows fit for analysis and excluded rows with a `reason` column.

    A row is excluded when its run did not finish (`status != FINISHED`) or its target is missing/NaN; failed trials
    must stay visible in the report rather than silently vanish from the correlations. A `reason` already in the
    table (the run's failure message) is kept after the exclusion's own.
    """
    require_columns(table, ["status", target])
    status = table["status"].astype(str).to_numpy()
    not_finished = status != FINISHED
    no_target = ~np.isfinite(pd.to_numeric(table[target], errors="coerce").to_numpy(dtype=float))
    reasons = [
        "; ".join(r for r in (f"status={s}" if bad_status else "", f"{target} missing" if bad_target else "") if r)
        for s, bad_status, bad_target in zip(status, not_finished, no_target)
    ]
    if "reason" in table.columns:  # the run's own failure reason, from the tracking store
        reasons = [f"{r}: {own}" if isinstance(own, str) and own else r for r, own in zip(reasons, table["reason"])]
    excluded = not_finished | no_target
    ok = table.loc[~excluded].copy()
    return ok, table.loc[excluded].assign(reason=[r for r, e in zip(reasons, excluded) if e])


def metric_columns(table: pd.DataFrame, prefixes: str | Iterable[str] = METRIC_PREFIXES) -> list[str]:
    """Metric column names starting with any of `prefixes`, in table order (e.g. `metric_columns(t, "latent/")`)."""
    wanted = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
    return [c for c in table.columns if isinstance(c, str) and c.startswith(wanted)]


def latent_metric_columns(table: pd.DataFrame) -> list[str]:
    """The `latent/<perspective>/<name>` columns: the candidate predictors of generation quality."""
    return metric_columns(table, "latent/")


def resolve_directions(columns: Iterable[str], declared: Mapping[str, bool]) -> dict[str, bool]:
    """Directions of the given columns that `declared` covers, exactly or by parameter variant.

    A registry declares its default keys (`latent/semantic/lnc@5`); a study may log another parameter
    (`lnc@20`), which points the same way: `name@param` inherits the direction of any declared `name@other`.
    """
    by_stem = {k.split("@")[0]: v for k, v in declared.items()}
    out = {}
    for column in columns:
        if column in declared:
            out[column] = declared[column]
        elif column.split("@")[0] in by_stem:
            out[column] = by_stem[column.split("@")[0]]
    return out


def usable_metrics(table: pd.DataFrame, directions: Mapping[str, bool], min_n: int = 3) -> list[str]:
    """Predictor columns with a direction, at least `min_n` finite values and some spread, sorted by name."""
    usable = []
    for column in metric_columns(table, PREDICTOR_PREFIXES):
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if column in directions and len(finite) >= min_n and np.ptp(finite) > 0:
            usable.append(column)
    return sorted(usable)


def present_targets(table: pd.DataFrame, min_n: int = 3) -> list[str]:
    """The targets of `TARGET_DIRECTIONS` with at least `min_n` finite values (gFID first)."""
    return [t for t in TARGET_DIRECTIONS if t in table.columns
            and np.isfinite(pd.to_numeric(table[t], errors="coerce").to_numpy(dtype=float)).sum() >= min_n]


def perspective_of(metric: str) -> str:
    """Perspective of a metric name: the second path segment of `latent/<perspective>/<name>`.

    Two-segment names (`traj/straightness`, `recon/psnr`) belong to their first segment, so both trajectory
    metrics form one `traj` perspective.
    """
    parts = metric.split("/")
    return parts[1] if len(parts) >= 3 else parts[0]


def require_columns(table: pd.DataFrame, columns: Iterable[str]) -> None:
    """Raise ValueError naming the missing columns and the available ones."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"columns {missing} not in table; available: {sorted(map(str, table.columns))}")


def require_directions(metrics: Iterable[str], directions: Mapping[str, bool]) -> None:
    """Raise ValueError naming metrics without a declared direction (nothing is inferred)."""
    missing = [m for m in metrics if m not in directions]
    if missing:
        raise ValueError(f"no direction declared for {missing}; declared: {sorted(directions)}")


def signed_metric(table: pd.DataFrame, metric: str, directions: Mapping[str, bool]) -> np.ndarray:
    """Metric values oriented so that higher means a better latent: `m` if higher is better else `-m`. Shape (N,)."""
    require_directions([metric], directions)
    require_columns(table, [metric])
    values = pd.to_numeric(table[metric], errors="coerce").to_numpy(dtype=float)
    return values if directions[metric] else -values
