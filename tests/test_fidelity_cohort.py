"""Multi-fidelity gFID on real Ray Tune: a cohort of trial jobs runs as one experiment under ASHA (`run_cohort`),
exactly the trials ASHA's rule promotes reach the full tier, the others are settled as stopped at their rung, and a
re-run restores the experiment and runs nothing again. The trainable follows the diffusion trial's contract (a
`tier/gfid` report per checkpoint, its store marker written before the last report) with known gFIDs."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from ray import cloudpickle, tune

from raysweep.config.allocation import FidelitySpec
from raysweep.pipeline.executors import Cohort
from raysweep.pipeline.store import STOPPED_RESULT, Store
from raysweep.pipeline.tune_stage import run_cohort
from raysweep.search.fidelity import TIER_GFID, Tiers, asha_scheduler

SPEC = FidelitySpec(grace_fraction=0.25, reduction_factor=2)
TIERS = Tiers.of(SPEC, steps=40, every=10, full_samples=64)  # 4 checkpoints: rungs 1, 2 and the full tier at 4


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import a pytest-loaded module
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def tier_trial(config: dict[str, Any]) -> None:
    """gFID at checkpoint i: the trial's quality plus a training deficit that shrinks with i; NaN off the rungs;
    the full tier writes the store marker before its report (ASHA stops every trial at max_t)."""
    marker = Path(config["marker"])
    calls = marker.parent / "calls"
    calls.mkdir(parents=True, exist_ok=True)
    (calls / str(len(list(calls.iterdir())))).touch()
    for i in range(1, TIERS.max_iterations + 1):
        value = config["quality"] + 1.0 / i if TIERS.rung(i) else np.nan
        if i == TIERS.max_iterations:
            Store.mark_done(marker, {"metrics": {"gen/best/gfid": value}})
        tune.report({TIER_GFID: value})


def settle(config: dict[str, Any], result: dict[str, Any]) -> None:
    marker = Path(config["marker"])
    if Store.result(marker) is None:
        Store.mark_done(marker, {"metrics": {}, STOPPED_RESULT: {"rung": TIERS.rung(result["training_iteration"])}})


def _cohort(tmp_path: Path, qualities: list[float], recorded: dict[str, dict[int, float]] | None = None) -> Cohort:
    names = tuple(f"t{i}" for i in range(len(qualities)))
    configs = tuple({"marker": str(tmp_path / n), "quality": q} for n, q in zip(names, qualities))
    todo = tuple(i for i, c in enumerate(configs) if Store.result(Path(c["marker"])) is None)
    return Cohort(names, configs, todo, asha_scheduler(SPEC, TIERS.max_iterations, recorded=recorded), settle)


def _outcomes(tmp_path: Path) -> dict[str, Any]:
    out = {}
    for marker in sorted(p for p in tmp_path.glob("t[0-9]*") if p.is_dir()):
        result = Store.result(marker)
        out[marker.name] = None if result is None else result.get(STOPPED_RESULT, {}).get("rung", "full")
    return out


def test_a_cohort_promotes_as_asha_does_and_a_rerun_restores_it(tmp_path: Path) -> None:
    """Trials run one at a time (each holds both CPUs), in order, with final gFIDs 2, 1, 4, 3. ASHA (rf 2) keeps a
    trial at a rung unless it is worse than the median of the trials recorded there: t0 and t1 (better than t0)
    go on; t2 is worse than median(t0, t1) at rung 1 and t3 worse than median(t0, t1, t2): exactly 4 / 2 trials
    reach the full tier, the others stop at rung 1."""
    assert TIERS.rungs == (1, 2, 4) and TIERS.cheap_samples == 16
    qualities = [2.0, 1.0, 4.0, 3.0]
    errors = run_cohort("diffusion-cohort-x", tier_trial, _cohort(tmp_path, qualities), str(tmp_path / "tune"),
                        {"CPU": 2})
    assert errors == {"t0": None, "t1": None, "t2": None, "t3": None}
    assert _outcomes(tmp_path) == {"t0": "full", "t1": "full", "t2": 1, "t3": 1}
    assert [len(list((tmp_path / "calls").iterdir()))] == [4]
    assert [p.name for p in (tmp_path / "tune").iterdir()] == ["diffusion-cohort-x"]
    trials = sorted(p.name for p in (tmp_path / "tune" / "diffusion-cohort-x").iterdir() if p.is_dir())
    assert trials == ["t0", "t1", "t2", "t3"]  # one experiment, its trials named by their jobs

    # the driver again (every job finished): the experiment is restored, nothing runs again
    errors = run_cohort("diffusion-cohort-x", tier_trial, _cohort(tmp_path, qualities), str(tmp_path / "tune"),
                        {"CPU": 2})
    assert errors == {}  # no job left to do
    assert len(list((tmp_path / "calls").iterdir())) == 4


def test_recorded_rung_values_seed_a_restored_asha(tmp_path: Path) -> None:
    """Tune restores trials, not their scheduler's records: a new ASHA told what t0 and t1 reported at rung 1
    (the tracked values) stops t2, which alone it would have promoted."""
    alone = run_cohort("alone", tier_trial, _cohort(tmp_path / "a", [4.0]), str(tmp_path / "tune"), {"CPU": 2})
    assert alone == {"t0": None} and _outcomes(tmp_path / "a") == {"t0": "full"}
    recorded = {"t0": {1: 2.0 + 1.0}, "t1": {1: 1.0 + 1.0}}
    for name in ("t0", "t1"):  # they finished before the restart
        Store.mark_done(tmp_path / "b" / name, {"metrics": {}})
    errors = run_cohort("seeded", tier_trial, _cohort(tmp_path / "b", [2.0, 1.0, 4.0], recorded),
                        str(tmp_path / "tune"), {"CPU": 2})
    assert errors == {"t2": None}
    assert _outcomes(tmp_path / "b")["t2"] == 1
