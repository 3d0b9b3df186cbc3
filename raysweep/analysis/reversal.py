"""Does a metric's relation to gFID survive a change of measurement? The reversal experiments' core (issue 24).

A study whose metric points opposite to the paper must tell a finding from an artefact of its scale. Each
experiment re-measures generation quality another way, on the same tokenizers: more or fewer sampler steps
(`gen/sampler/gfid@<method><steps>`), a shorter training budget (the convergence curve `conv/gfid@<step>`), a
second scorer (`gen/gfid@<scorer>`), or no diffusion at all (the control: decoded perturbed latents,
`control/fd@<perturbation>`). For each score, `relation_across_scores` gives the metric's correlation with it (the
report's sign convention: the metric sign-normalised so higher is a better latent; r < 0 against a lower-is-better
score agrees with the paper) with a tokenizer-level bootstrap CI, and the agreement of the tokenizer ranking with the
study's gFID. `budget_response` asks whether the tokenizers a metric favours improve fastest with training.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from raysweep.analysis.convergence import curve_columns
from raysweep.analysis.correlation import correlate
from raysweep.analysis.tidy import DEFAULT_TARGET
from raysweep.analysis.validity import SAMPLER_COLUMN, SCORER_COLUMN, TOKENIZER, rank_agreement

CONTROL_PREFIX = "control/fd@"  # a no-diffusion control's FD per perturbation (experiments/no_diffusion_control.py)
SCORE_COLUMNS = (SAMPLER_COLUMN, SCORER_COLUMN, re.compile(rf"^{re.escape(CONTROL_PREFIX)}.+$"))
RELATION_COLUMNS = ("score", "tokenizers", "r", "ci_low", "ci_high", "spearman", "agrees_with_paper",
                    "rank_spearman_vs_gfid", "top3_overlap_vs_gfid")


def score_columns(best: pd.DataFrame) -> list[str]:
    """Every alternative lower-is-better score the table carries: sampler re-samples, extra scorers, the control,
    and the convergence curve by step (the study's own gFID first)."""
    found = [c for c in best.columns if isinstance(c, str) and any(p.match(c) for p in SCORE_COLUMNS)]
    return [DEFAULT_TARGET, *sorted(found), *curve_columns(best)]


def relation_across_scores(best: pd.DataFrame, metric: str, directions: Mapping[str, bool],
                           scores: Sequence[str] | None = None, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per score: tokenizers with both values, Pearson r (bootstrap CI resampling tokenizers with all their
    replicates) and Spearman of the sign-normalised `metric` with the score over the runs, whether r has the paper's
    sign (r < 0), and how the score's tokenizer ranking agrees with the study's gFID (Spearman of the per-tokenizer
    means, top-3 overlap)."""
    rows = []
    for score in scores if scores is not None else score_columns(best):
        if score not in best.columns:
            continue
        corr = correlate(best, [metric], {**directions, score: False}, target=score, methods=("pearson", "spearman"),
                         n_boot=n_boot, seed=seed, cluster=TOKENIZER).set_index("method")
        agree = rank_agreement(best, DEFAULT_TARGET, score) if score != DEFAULT_TARGET else {}
        pearson = corr.loc["pearson"]
        rows.append((score, int(best.dropna(subset=[score, metric])[TOKENIZER].nunique()), pearson["r"],
                     pearson["ci_low"], pearson["ci_high"], corr.loc["spearman", "r"],
                     bool(pearson["r"] < 0) if np.isfinite(pearson["r"]) else None,
                     agree.get("spearman", 1.0 if score == DEFAULT_TARGET else np.nan),
                     agree.get("top3_overlap", "-")))
    return pd.DataFrame(rows, columns=list(RELATION_COLUMNS))


def budget_response(best: pd.DataFrame, metric: str, directions: Mapping[str, bool]) -> tuple[pd.DataFrame, float]:
    """Per tokenizer (means over replicates): the metric, gFID at each checkpoint of the curve, and the relative
    improvement from the first to the last checkpoint; and the Spearman correlation of the sign-normalised metric
    with that improvement (> 0: the tokenizers the metric calls better improve fastest). Empty without a curve."""
    curve = curve_columns(best)
    if len(curve) < 2 or metric not in best.columns:
        return pd.DataFrame(), float("nan")
    means = best[[metric, *curve]].apply(pd.to_numeric, errors="coerce").groupby(best[TOKENIZER]).mean().dropna()
    means["improvement"] = (means[curve[0]] - means[curve[-1]]) / means[curve[0]]
    sign = 1.0 if directions[metric] else -1.0
    rho = (float(stats.spearmanr(sign * means[metric], means["improvement"]).statistic)
           if len(means) >= 3 and means["improvement"].nunique() > 1 else float("nan"))
    return means.sort_values(metric).reset_index(), rho
