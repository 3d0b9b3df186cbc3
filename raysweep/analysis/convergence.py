"""Were the diffusion models trained long enough? A flag from each run's cheap gFID at its checkpoints.

A ranking of tokenizers by the gFID of under-trained diffusion models ranks how fast their latents are learnt, not
how good the models become. The curve is the cheap-tier gFID at each checkpoint, carried in the tidy table as
columns `conv/gfid@<step>` (the tracking loader fills them from the run's `CHECKPOINT_GFID` history, or from the
cheap ASHA rungs `tier/rung<r>/gfid`). Per tokenizer x backbone, over its seeds s:

    d_s = g_s(second-last checkpoint) - g_s(last checkpoint)        (the improvement over the last interval)
    under-trained  when  mean d / mean g(second-last) > 5 %  and  mean d > 2 * SE,  SE = std(d_s) / sqrt(seeds)

`unknown` when any seed has fewer than 3 checkpoints, or there is one seed (no standard error); otherwise
`converged`. While any group is under-trained or unknown, the study's answer is provisional.

The rule reads one interval, so a curve that is still falling slowly, or that paused for one interval, passes it
(the benchmark's baseline passed at 10,000 steps and fell another 28 % by 16,000). Beside it each group reports its
`trend`: the relative improvement per interval of a least-squares line through each seed's last
`TREND_INTERVALS` + 1 checkpoints (mean over seeds, over the mean level there), with its SE; it informs, it does not
change the status.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from raysweep.tracking.keys import CHECKPOINT_GFID

CURVE_COLUMN = re.compile(rf"^{re.escape(CHECKPOINT_GFID)}@(\d+)$")
MIN_CHECKPOINTS = 3
MIN_IMPROVEMENT = 0.05  # relative improvement over the last checkpoint interval
SE_MULTIPLE = 2.0
TREND_INTERVALS = 3  # the reported trend's least-squares window, in checkpoint intervals
UNDER_TRAINED, CONVERGED, UNKNOWN = "under-trained", "converged", "unknown"
GROUP = ("tokenizer_id", "backbone")
COLUMNS = (*GROUP, "seeds", "checkpoints", "gfid_prev", "gfid_last", "improvement", "improvement_se", "trend",
           "trend_se", "status")


def curve_columns(table: pd.DataFrame) -> list[str]:
    """The `conv/gfid@<step>` columns, by step."""
    found = [(int(m.group(1)), c) for c in table.columns if isinstance(c, str) and (m := CURVE_COLUMN.match(c))]
    return [c for _, c in sorted(found)]


def trend(curves: list[np.ndarray]) -> tuple[float, float]:
    """(relative improvement per interval, its SE) of a least-squares line through each seed's last
    TREND_INTERVALS + 1 checkpoints: minus the mean slope over the mean level; NaN with too few points (SE: seeds)."""
    window = TREND_INTERVALS + 1
    if min(len(c) for c in curves) < window:
        return np.nan, np.nan
    tails = np.array([c[-window:] for c in curves])
    slopes = np.polyfit(np.arange(window), tails.T, 1)[0]  # one slope per seed
    level = float(tails.mean())
    se = float(slopes.std(ddof=1) / np.sqrt(len(slopes))) if len(slopes) >= 2 else np.nan
    return float(-slopes.mean() / level), se / level


def _flag(curves: list[np.ndarray]) -> tuple[int, float, float, float, float, float, float, str]:
    """(fewest checkpoints, mean prev, mean last, relative improvement, its SE, trend, its SE, status) of one
    group's seed curves."""
    fewest = min(len(c) for c in curves)
    if fewest < MIN_CHECKPOINTS:
        return fewest, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, UNKNOWN
    prev, last = np.array([c[-2] for c in curves]), np.array([c[-1] for c in curves])
    gain = prev - last
    se = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) >= 2 else np.nan
    relative = float(gain.mean() / prev.mean())
    if not np.isfinite(se):
        status = UNKNOWN
    elif relative > MIN_IMPROVEMENT and gain.mean() > SE_MULTIPLE * se:
        status = UNDER_TRAINED
    else:
        status = CONVERGED
    return (fewest, float(prev.mean()), float(last.mean()), relative, se / float(prev.mean()), *trend(curves),
            status)


def convergence_flags(best: pd.DataFrame) -> pd.DataFrame:
    """One row per tokenizer x backbone of the best-CFG rows (one row per diffusion run): its seeds, fewest
    checkpoints, mean cheap gFID at the last two checkpoints, the relative improvement and its standard error,
    and the status (module docstring). Empty when the table has no curve columns."""
    columns = curve_columns(best)
    if not columns or not set(GROUP) <= set(best.columns):
        return pd.DataFrame(columns=list(COLUMNS))
    values = best[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    rows = []
    for key, index in best.groupby(list(GROUP), sort=True).indices.items():
        curves = [v[np.isfinite(v)] for v in values[index]]
        rows.append((*key, len(curves), *_flag(curves)))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def provisional(flags: pd.DataFrame) -> str:
    """The report's warning when the answer is provisional (any group under-trained or unknown), else ""."""
    if flags.empty:
        return ""
    open_ = flags[flags["status"] != CONVERGED]
    if open_.empty:
        return ""
    counts = open_["status"].value_counts().to_dict()
    return (f"Provisional answer: {counts.get(UNDER_TRAINED, 0)} tokenizer x backbone groups are under-trained and "
            f"{counts.get(UNKNOWN, 0)} unknown (cheap gFID still improving by > {MIN_IMPROVEMENT:.0%} and > "
            f"{SE_MULTIPLE:g} SE over the last checkpoint interval, or too few checkpoints / seeds to tell); see "
            "'Convergence'.")
