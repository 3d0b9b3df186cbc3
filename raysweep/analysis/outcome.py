"""Each tokenizer's diffusion outcome on its own MLflow run: the runs table then answers the study's question.

MLflow's runs table, parallel-coordinates and scatter views show one run per row; latent metrics live on the
tokenizer runs and gFID on their diffusion runs. After the analysis, each tokenizer run gets the mean of its
diffusion runs' best-CFG gFID over seeds, the 95 % t interval of that mean and the number of seeds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from raysweep.analysis.tidy import DEFAULT_TARGET
from raysweep.tracking.keys import OUTCOME_GFID, OUTCOME_GFID_HI, OUTCOME_GFID_LO, OUTCOME_SEEDS
from raysweep.tracking.tracker import Tracker

LEVEL = 0.95


def tokenizer_outcomes(best: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Tokenizer run id -> {OUTCOME_GFID, OUTCOME_SEEDS, and with 2+ seeds OUTCOME_GFID_LO / _HI} from the analysed
    rows at each diffusion run's best CFG (one row per run)."""
    gfid = pd.to_numeric(best[DEFAULT_TARGET], errors="coerce")
    out = {}
    for run_id, values in gfid.groupby(best["tokenizer_run_id"]):
        v = values.dropna().to_numpy(dtype=float)
        if not len(v):
            continue
        summary = {OUTCOME_GFID: float(v.mean()), OUTCOME_SEEDS: float(len(v))}
        if len(v) >= 2:
            half = stats.t.ppf(0.5 + LEVEL / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
            summary.update({OUTCOME_GFID_LO: float(v.mean() - half), OUTCOME_GFID_HI: float(v.mean() + half)})
        out[str(run_id)] = summary
    return out


def log_tokenizer_outcomes(tracker: Tracker, best: pd.DataFrame) -> None:
    """Log `tokenizer_outcomes(best)` on each tokenizer run (the analysis stage calls this after `analyze`)."""
    for run_id, summary in tokenizer_outcomes(best).items():
        tracker.log_metrics(run_id, summary)
