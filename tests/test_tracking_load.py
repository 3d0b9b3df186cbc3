"""The read paths `raysweep analyze` uses at load: curve JSON read in place on a local artifact store (the same
values the run logged, none for a run that logged none), length-ratio histories fetched concurrently in run order,
and `Tracker.runs` leaving the garbage collector as it found it."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from raysweep.tracking import Tracker
from raysweep.tracking.table import CURVES_DIR, LENGTH_RATIO, latent_curve, length_ratio_curves

KEY = "latent/velocity/viv_t"


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    """One store for the module: creating (migrating) a sqlite MLflow DB is the slow part."""
    return Tracker(f"sqlite:///{tmp_path_factory.mktemp('load') / 'mlflow.db'}", "load")


def test_curves_and_histories_read_back_what_was_logged(tracker: Tracker) -> None:
    rng = np.random.default_rng(0)
    logged: dict[str, np.ndarray] = {}
    runs = [tracker.open_run(f"r{i}", "tokenizer", f"h{i}") for i in range(3)]
    for run_id in runs[:2]:
        logged[run_id] = rng.random(5)
        tracker.log_json(run_id, {"other": {"grid": [0.0], "values": [1.0]}}, f"{CURVES_DIR}/a_curves.json")
        tracker.log_json(run_id, {KEY: {"grid": np.linspace(0, 1, 5).tolist(), "values": logged[run_id].tolist()}},
                         f"{CURVES_DIR}/b_curves.json")  # a second stage's file on the same run: both are read
    ratios = {run_id: rng.random(4) for run_id in runs}
    for run_id, r in ratios.items():
        tracker.log_history(run_id, [(i, {LENGTH_RATIO: float(v)}) for i, v in enumerate(r)])

    assert len(latent_curve(tracker, runs, "other")) == 2
    curves = latent_curve(tracker, runs, KEY)
    assert set(curves["tokenizer_run_id"]) == set(logged)  # the third run logged no curve
    for run_id, values in logged.items():
        got = curves[curves["tokenizer_run_id"] == run_id]
        np.testing.assert_allclose(got["value"], values)
        np.testing.assert_allclose(got["t"], np.linspace(0, 1, 5))

    table = length_ratio_curves(tracker, runs)
    assert list(dict.fromkeys(table["diffusion_run_id"])) == runs  # in the order asked
    for run_id, r in ratios.items():
        got = table[table["diffusion_run_id"] == run_id].sort_values("segment")
        np.testing.assert_allclose(got["length_ratio"], r)
        assert (got["n_segments"] == 4).all()


def test_runs_restores_the_garbage_collector(tracker: Tracker) -> None:
    tracker.open_run("d", "diffusion", "h")
    assert gc.isenabled()
    assert len(tracker.runs("diffusion")) == 1 and gc.isenabled()
    gc.disable()
    try:
        assert len(tracker.runs("diffusion")) == 1 and not gc.isenabled()
    finally:
        gc.enable()
