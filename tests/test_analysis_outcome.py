"""A tokenizer run's summary of its diffusion outcome, logged on a real MLflow store."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from raysweep.analysis.outcome import log_tokenizer_outcomes
from raysweep.tracking import Tracker
from raysweep.tracking.keys import OUTCOME_GFID, OUTCOME_GFID_HI, OUTCOME_GFID_LO, OUTCOME_SEEDS


def test_mean_best_gfid_its_t_interval_and_seed_count_on_each_tokenizer_run(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    study = tracker.open_run("t", "study", "s")
    runs = {tid: tracker.open_run(tid, "tokenizer", f"key-{tid}", parent_id=study) for tid in ("a", "b")}
    gfids = {"a": [4.0, 5.0, 7.0], "b": [9.0]}
    best = pd.DataFrame([{"tokenizer_run_id": runs[t], "gen/gfid": g} for t, values in gfids.items() for g in values])
    log_tokenizer_outcomes(tracker, best)

    a, b = (Tracker.metrics_of(tracker.client.get_run(runs[t])) for t in ("a", "b"))
    low, high = stats.t.interval(0.95, 2, loc=16 / 3, scale=stats.sem(gfids["a"]))
    assert a[OUTCOME_GFID] == pytest.approx(16 / 3) and a[OUTCOME_SEEDS] == 3
    assert (a[OUTCOME_GFID_LO], a[OUTCOME_GFID_HI]) == pytest.approx((low, high))
    assert b[OUTCOME_GFID] == 9.0 and b[OUTCOME_SEEDS] == 1 and OUTCOME_GFID_LO not in b  # one seed: no interval
