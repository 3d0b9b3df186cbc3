"""Driver crash: `raysweep run` (and the local Ray it started) SIGKILLed at seeded random points of a micro study;
each re-run resumes, and the final analysis table equals that of an uninterrupted run, with no duplicate runs.
The study includes a tokenizer whose loss becomes non-finite: it stops, its run is FAILED with the reason, the
sweep goes on, and the analysis lists it as excluded."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_e2e_study import micro_study

from raysweep.config import load_study
from raysweep.tracking import HASH_TAG, STAGE_TAG, Tracker
from raysweep.tracking.table import study_table

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


def _start(study: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_DEDUP_LOGS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", str(study)], cwd=study.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _run_to_end(study: Path) -> int:
    return _start(study).wait(timeout=900)


def _kill_when(study: Path, ready: str, delay: float) -> None:
    """Start a run, wait until the file pattern `ready` exists under the store, then `delay` s, then SIGKILL the
    driver and everything it started (its process group: the local Ray)."""
    proc = _start(study)
    store = study.parent / "store"
    deadline = time.monotonic() + 600
    while not list(store.glob(ready)):
        assert proc.poll() is None, f"the run ended before '{ready}' appeared"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(delay)
    assert proc.poll() is None, f"the run ended within {delay:.2f}s after '{ready}'"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _table(study: Path) -> pd.DataFrame:
    spec = load_study(study)
    table = study_table(Tracker(spec.tracking_uri, spec.experiment_name))
    return table.drop(columns=[c for c in table.columns if c.endswith("run_id")])


def test_killed_driver_reruns_to_the_same_table_without_duplicates(tmp_path: Path) -> None:
    reference = _write_study(tmp_path / "uninterrupted")
    assert _run_to_end(reference) == 1  # exit 1: the diverging trial failed, the rest finished
    crashed = _write_study(tmp_path / "crashed")
    rng = random.Random(7)
    for ready in ("tune/tokenizers-*/*/checkpoint_*", "tune/diffusion-*/*/checkpoint_*"):
        _kill_when(crashed, ready, rng.uniform(0.0, 1.0))
    assert _run_to_end(crashed) == 1

    expected, table = _table(reference), _table(crashed)
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-4)

    spec = load_study(crashed)
    runs = Tracker(spec.tracking_uri, spec.experiment_name).runs()
    keys = [(r.data.tags[STAGE_TAG], r.data.tags[HASH_TAG]) for r in runs]
    assert len(keys) == len(set(keys)) == 1 + 2 + 1  # study, two tokenizers, one diffusion: no duplicates
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert [r.data.tags["tokenizer_id"] for r in failed] == ["diverging"]
    assert "DivergenceError: non-finite" in failed[0].data.tags["raysweep.failure_reason"]
    excluded = table[table["tokenizer_id"] == "diverging"]
    assert len(excluded) == 1 and excluded["status"].iloc[0] == "FAILED"
    assert "non-finite" in excluded["reason"].iloc[0]
    assert (table.loc[table["tokenizer_id"] == "baseline", "status"] == "FINISHED").all()
