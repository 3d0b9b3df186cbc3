"""`raysweep run` as a separate process group, for the tests that SIGKILL a driver and its local Ray mid-study and
check that the re-run resumes to an uninterrupted run's table without duplicate MLflow runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from raysweep.config import load_study
from raysweep.tracking import HASH_TAG, STAGE_TAG, Tracker
from raysweep.tracking.table import study_table


def start_run(study: Path, *flags: str) -> subprocess.Popen:
    """The CLI in its own session (so a kill reaches the Ray it starts), with this interpreter's import path."""
    env = {**os.environ, "RAY_DEDUP_LOGS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", *flags, str(study)], cwd=study.parent,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (its process group: the local Ray)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tracker(study: Path) -> Tracker:
    spec = load_study(study)
    return Tracker(spec.tracking_uri, spec.experiment_name)


def tidy_table(study: Path) -> pd.DataFrame:
    """The analysis table without run ids (which differ between two stores of the same study)."""
    table = study_table(_tracker(study))
    return table.drop(columns=[c for c in table.columns if c.endswith("run_id")])


def tracked_runs(study: Path) -> tuple[list, list[tuple[str, str]]]:
    """The study's MLflow runs and their (stage, content hash) keys: a duplicate run repeats a key."""
    runs = _tracker(study).runs()
    return runs, [(r.data.tags[STAGE_TAG], r.data.tags[HASH_TAG]) for r in runs]
