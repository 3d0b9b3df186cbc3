"""Driver crash: `raysweep run` (and the local Ray it started) SIGKILLed at seeded random points of a micro study;
each re-run resumes, and the final analysis table equals that of an uninterrupted run, with no duplicate runs.
The study includes a tokenizer whose loss becomes non-finite: it stops, its run is FAILED with the reason, the
sweep goes on, and the analysis lists it as excluded."""
from __future__ import annotations

import random
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from study_process import kill_run, start_run, tidy_table, tracked_runs
from test_e2e_study import micro_study

pytestmark = pytest.mark.e2e
DIVERGING = {"id": "diverging", "regularizer": "baseline", "kl_weight": 1.0e300}  # KL x 1e300 = inf in float32


def _write_study(root: Path) -> Path:
    data = micro_study(root / "store")
    data["tokenizers"] = {**data["tokenizers"], "variants": [{"regularizer": "baseline"}, DIVERGING]}
    data["metrics"] = {**data["metrics"], "actors": 1}
    data["ray"] = {"num_cpus": 2}
    data["storage"]["checkpoint_every"] = 10
    root.mkdir(parents=True)
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run_to_end(study: Path) -> int:
    return start_run(study).wait(timeout=900)


def _kill_when(study: Path, ready: str, delay: float) -> None:
    """Start a run, wait until the file pattern `ready` exists under the store, then `delay` s, then SIGKILL the
    driver and everything it started (its process group: the local Ray)."""
    proc = start_run(study)
    store = study.parent / "store"
    deadline = time.monotonic() + 600
    while not list(store.glob(ready)):
        assert proc.poll() is None, f"the run ended before '{ready}' appeared"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(delay)
    assert proc.poll() is None, f"the run ended within {delay:.2f}s after '{ready}'"
    kill_run(proc)


def test_killed_driver_reruns_to_the_same_table_without_duplicates(tmp_path: Path) -> None:
    reference = _write_study(tmp_path / "uninterrupted")
    assert _run_to_end(reference) == 1  # exit 1: the diverging trial failed, the rest finished
    crashed = _write_study(tmp_path / "crashed")
    rng = random.Random(7)
    for ready in ("tune/tokenizers-*/*/checkpoint_*", "tune/diffusion-*/*/checkpoint_*"):
        _kill_when(crashed, ready, rng.uniform(0.0, 1.0))
    assert _run_to_end(crashed) == 1

    expected, table = tidy_table(reference), tidy_table(crashed)
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-4)

    runs, keys = tracked_runs(crashed)
    assert len(keys) == len(set(keys)) == 1 + 2 + 1  # study, two tokenizers, one diffusion: no duplicates
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert [r.data.tags["tokenizer_id"] for r in failed] == ["diverging"]
    assert "DivergenceError: non-finite" in failed[0].data.tags["raysweep.failure_reason"]
    excluded = table[table["tokenizer_id"] == "diverging"]
    assert len(excluded) == 1 and excluded["status"].iloc[0] == "FAILED"
    assert "non-finite" in excluded["reason"].iloc[0]
    assert (table.loc[table["tokenizer_id"] == "baseline", "status"] == "FINISHED").all()
