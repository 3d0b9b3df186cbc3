"""Our coefficients beside the paper's (METRICS.md, last section: conv f16d32 tokenizers, SiT-B, Pearson r of the
sign-normalised metric against gFID at the best CFG, and the joint OLS gFID ~ SRSS + LNC).

Each paper item names a family of our metrics by a regular expression (LNC is reported at k = 5 and 10, SEC at two
thresholds); like the paper's highlighted metric, we show the member with the largest |r|, whichever way it goes
(a member reversed against the paper is shown, not passed over for a weaker one that agrees).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from raysweep.analysis.regression import ols
from raysweep.analysis.tidy import DEFAULT_TARGET, require_columns

# (paper item, pattern over our metric names, paper's Pearson r vs gFID)
PAPER_CORRELATIONS: tuple[tuple[str, str, float], ...] = (
    ("VIV", r"^latent/velocity/viv$", -0.87),
    ("semantic (LNC)", r"^latent/semantic/lnc@", -0.79),
    ("spatial (SRSS)", r"^latent/spatial/srss", -0.72),
    ("SEC", r"^latent/smoothness/sec@", -0.70),
    ("iFID", r"ifid", -0.65),
    ("uniformity", r"^latent/uniformity/", -0.64),
    ("equivariance", r"^latent/equivariance/", -0.53),
    ("trajectory straightness", r"^traj/straightness$", -0.83),
    ("trajectory efficiency", r"^traj/efficiency$", -0.90),
)
PAPER_JOINT = ("joint OLS R² (SRSS + LNC)", ("spatial (SRSS)", "semantic (LNC)"), 0.91)  # gFID ~ SRSS + LNC
COLUMNS = ("item", "paper", "ours", "metric", "ci_low", "ci_high", "n")


def compare_with_paper(corr: pd.DataFrame, best: pd.DataFrame, target: str = DEFAULT_TARGET) -> pd.DataFrame:
    """One row per paper item: the paper's value and ours (Pearson r with CI; R^2 for the joint model).

    `corr` is `correlate` output against `target` on the best-CFG rows `best`. Items we did not measure keep NaN
    and an empty metric name, so the comparison always lists the paper's full set.
    """
    require_columns(corr, ["metric", "method", "r", "ci_low", "ci_high", "n", "agreement"])
    pearson = corr[(corr["method"] == "pearson") & corr["agreement"].notna()]
    rows, chosen = [], {}
    for item, pattern, paper_r in PAPER_CORRELATIONS:
        match = pearson[pearson["metric"].map(lambda m, p=pattern: re.search(p, m) is not None)]
        if match.empty:
            rows.append((item, paper_r, np.nan, "", np.nan, np.nan, 0))
            continue
        top = match.loc[match["r"].astype(float).abs().idxmax()]
        chosen[item] = top["metric"]
        rows.append((item, paper_r, top["r"], top["metric"], top["ci_low"], top["ci_high"], int(top["n"])))
    label, (a, b), paper_r2 = PAPER_JOINT
    r2, n, name = np.nan, 0, ""
    if a in chosen and b in chosen:
        name = f"{chosen[a]} + {chosen[b]}"
        complete = best[[chosen[a], chosen[b], target]].apply(pd.to_numeric, errors="coerce").dropna()
        if len(complete) >= 4:
            fit = ols(complete, [chosen[a], chosen[b]], target)
            r2, n = fit.r2, fit.n
    rows.append((label, paper_r2, r2, name, np.nan, np.nan, n))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_comparison(frame: pd.DataFrame) -> str:
    """Aligned plain-text table for the terminal (`raysweep analyze --compare-paper`)."""
    lines = [f"{'item':<36} {'paper':>7} {'ours':>7}  {'95% CI':<17} {'n':>4}  metric"]
    for row in frame.itertuples(index=False):
        ours = "    n/a" if np.isnan(row.ours) else f"{row.ours:7.2f}"
        ci = "" if np.isnan(row.ci_low) else f"[{row.ci_low:.2f}, {row.ci_high:.2f}]"
        lines.append(f"{row.item:<36} {row.paper:7.2f} {ours}  {ci:<17} {row.n:>4}  {row.metric or '-'}")
    return "\n".join(lines)
