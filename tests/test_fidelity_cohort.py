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
from local_ray import local_ray
from ray import tune

from raysweep.config.allocation import FidelitySpec
from raysweep.config.tiers import Tiers
from raysweep.engine.store import STOPPED_RESULT, Store
from raysweep.engine.tune import Cohort, run_cohort
from raysweep.search.fidelity import TIER_GFID, asha_scheduler

SPEC = FidelitySpec(grace_fraction=0.25, reduction_factor=2)
TIERS = Tiers.of(SPEC, steps=40, every=10, full_samples=64)  # 4 checkpoints: rungs 1, 2 and the full tier at 4


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    with local_ray(by_value=sys.modules[__name__]):
        yield


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
    scheduler = asha_scheduler(SPEC, TIERS.max_iterations, recorded=None if recorded is None else lambda: recorded)
    return Cohort(names, configs, todo, scheduler, settle)


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


def fidelity_study(root: Path) -> dict[str, Any]:
    """The micro study with 4 tokenizers, all calibrated in one batch (one cohort of 4 diffusion trials), each
    diffusion trial holding both CPUs (so the cohort's trials run one after another, in plan order) and checkpointed
    4 times: rungs 1, 2 and the full tier at 4; the cheap tier scores 32 of the 64 samples."""
    from test_e2e_study import micro_study

    data = micro_study(root)
    data["tokenizers"]["variants"] = [{"regularizer": "baseline", "kl_weight": w, "id": f"t{i}"}
                                      for i, w in enumerate((1e-6, 1e-3, 1e-1, 1.0))]
    data["metrics"] = {"names": ["viv", "sec", "velocity_fisher"], "actors": 1, "batch_size": 32,
                       "params": {"velocity_fisher": {"t_points": 5}}}
    data["diffusion"]["steps"] = 40
    data["storage"]["checkpoint_every"] = 10
    data["resources"] = {"diffusion": {"cpu": 2}}
    data["diffusion"]["allocation"] = {
        "mode": "proxy", "budget": {"trials": 4}, "calibration": {"count": 4}, "acquisition": {"draws": 100},
        "stop": {"never": True}, "fidelity": {"grace_fraction": 0.25, "reduction_factor": 2, "sample_fraction": 0.5}}
    return data


def asha_reaches_full_tier(values: list[dict[int, float]], rungs: tuple[int, ...], rf: int) -> list[bool]:
    """ASHA's rule replayed on trials run one after another (an independent statement of it): at each cheap rung a
    trial stops when its gFID is above the 1/rf quantile of the gFIDs recorded there before it."""
    records: dict[int, list[float]] = {r: [] for r in rungs[:-1]}
    out = []
    for v in values:
        full = True
        for r in rungs[:-1]:
            stop = bool(records[r]) and v[r] > np.percentile(records[r], 100 / rf)
            records[r].append(v[r])
            if stop:
                full = False
                break
        out.append(full)
    return out


@pytest.mark.e2e
def test_a_fidelity_study_runs_its_batch_as_one_asha_cohort(tmp_path: Path) -> None:
    """`raysweep run` of a proxy-guided study with `fidelity` on real Ray, Tune, MLflow and Parquet: the calibration
    batch's 4 diffusion trials are one Tune experiment; the ones ASHA's rule promotes (replayed on the tracked rung
    gFIDs) reach the full tier and are the only measured rows; stopped runs are finished with tier/ keys and no
    gen/ keys, their velocity-Fisher jobs skipped; the report has the tier agreement; a re-run redoes nothing."""
    import mlflow
    import pandas as pd

    from raysweep.config import parse_study
    from raysweep.engine.events import JobStarted
    from raysweep.runner import run_study
    from raysweep.search.allocation import load_state
    from raysweep.tracking import Tracker
    from raysweep.tracking.keys import (
        GEN_PREFIX,
        STOPPED,
        TIER_RUNG,
        TIER_TAG,
        stopped_reason,
        tier_gfid_key,
    )

    study = parse_study(fidelity_study(tmp_path / "study"))
    result = run_study(study)
    assert not result.failed, result.failed
    tracker = Tracker(study.tracking_uri, study.experiment_name)
    runs = sorted(tracker.runs("diffusion"), key=lambda r: r.data.tags["tokenizer_id"])
    assert [r.data.tags["tokenizer_id"] for r in runs] == ["t0", "t1", "t2", "t3"]
    metrics = [Tracker.metrics_of(r) for r in runs]
    rungs = TIERS.rungs  # the study's: 40 steps / 10 per checkpoint, rf 2
    values = [{r: m.get(tier_gfid_key(i + 1), np.nan) for i, r in enumerate(rungs[:-1])} for m in metrics]
    expected = asha_reaches_full_tier(values, rungs, 2)
    assert expected[0]  # the first trial is compared with nobody: always promoted
    for run, m, full in zip(runs, metrics, expected):
        assert run.info.status == "FINISHED"
        assert np.isfinite(m[tier_gfid_key(1)])  # every trial was scored at the cheap rung
        if full:
            assert run.data.tags[TIER_TAG] == "full" and m[TIER_RUNG] == len(rungs)
            assert np.isfinite(m["gen/best/gfid"])
        else:
            assert run.data.tags[TIER_TAG] == STOPPED and not any(k.startswith(GEN_PREFIX) for k in m)
    tune_dirs = sorted(p.name for p in Path(study.tune_storage).iterdir() if p.name.startswith("diffusion"))
    assert len(tune_dirs) == 1 and tune_dirs[0].startswith("diffusion-cohort-")

    state = load_state(tmp_path / "study" / "allocation.json")
    assert state is not None and len(state.batches) == 1 and sorted(state.batches[0]) == ["t0", "t1", "t2", "t3"]
    full_ids = {f"t{i}" for i, full in enumerate(expected) if full}
    assert state.measured_ids() == full_ids and set(state.stopped) == {"t0", "t1", "t2", "t3"} - full_ids
    stopped_runs = [f"t{i}/SiT-T/0" for i, full in enumerate(expected) if not full]
    skipped = {(s["stage"], s["id"]): s["reason"] for s in result.skipped}
    assert {k for k in skipped if k[0] == "diffusion_metrics"} == {("diffusion_metrics", r) for r in stopped_runs}
    for r, m in zip(runs, metrics):
        if r.data.tags[TIER_TAG] == STOPPED:
            reason = skipped[("diffusion_metrics", r.data.tags["mlflow.runName"])]
            assert reason.endswith(stopped_reason(int(m[TIER_RUNG])))

    out = Path(mlflow.artifacts.download_artifacts(run_id=result.study_run_id, artifact_path="analysis",
                                                   tracking_uri=study.tracking_uri, dst_path=str(tmp_path / "a")))
    table = pd.read_csv(out / "table.csv")
    assert set(table.loc[table["status"] == "STOPPED", "tokenizer_id"]) == {"t0", "t1", "t2", "t3"} - full_ids
    assert not any(c.startswith("tier/") for c in table.columns)  # cheap-tier values never become table metrics
    report = (out / "report.md").read_text()
    assert "Multi-fidelity gFID: cheap vs full tier" in report and "spearman" in report
    n_full = sum(expected)  # trials at the cheap rung | reached the full tier | with both
    assert f"| 4 | {n_full} | {n_full} |" in report

    # a re-run of the finished study: every job cached, no run added
    events: list[Any] = []
    again = run_study(study, sink=events.append)
    assert not again.failed
    assert [e for e in events if isinstance(e, JobStarted) and e.stage != "analysis"] == []
    assert len(tracker.runs("diffusion")) == 4


@pytest.mark.e2e
def test_a_driver_killed_mid_cohort_resumes_the_cohort_experiment(tmp_path: Path) -> None:
    """`raysweep run` killed (SIGKILL, its whole process group) while the cohort's second trial trains, then run
    again: the cohort's experiment is restored, not started anew — no trial trains from scratch again (each run's
    train/loss history has every step once), no MLflow run is duplicated — and ASHA's decisions are still its
    rule on the tracked rung gFIDs (the restored ASHA starts from them)."""
    import time

    import yaml
    from study_process import kill_run, start_run, tracked_runs

    from raysweep.config import parse_study
    from raysweep.runner import run_study
    from raysweep.tracking import Tracker
    from raysweep.tracking.keys import TIER_TAG, tier_gfid_key

    data = fidelity_study(tmp_path / "study")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    driver = start_run(path)
    deadline = time.monotonic() + 900
    try:
        while not list((tmp_path / "study" / "tune").glob("diffusion-cohort-*/t1_SiT-T_0/checkpoint_*")):
            assert driver.poll() is None, "the driver ended before the cohort's second trial checkpointed"
            assert time.monotonic() < deadline, "the cohort's second trial never checkpointed"
            time.sleep(0.5)
    finally:
        kill_run(driver)
    study = parse_study(data)
    assert Tracker(study.tracking_uri, study.experiment_name).runs("diffusion")  # killed mid-cohort
    result = run_study(study)
    assert not result.failed, result.failed

    _, keys = tracked_runs(path)
    assert len(keys) == len(set(keys))  # no MLflow run duplicated
    tracker = Tracker(study.tracking_uri, study.experiment_name)
    runs = sorted(tracker.runs("diffusion"), key=lambda r: r.data.tags["tokenizer_id"])
    assert [r.data.tags["tokenizer_id"] for r in runs] == ["t0", "t1", "t2", "t3"]
    (cohort,) = (tmp_path / "study" / "tune").glob("diffusion-cohort-*")
    assert len(list(cohort.glob("experiment_state-*.json"))) == 2  # the first driver's, then the restored one's
    for run in runs:
        steps = [m.step for m in tracker.client.get_metric_history(run.info.run_id, "train/loss")]
        assert len(steps) == len(set(steps)), run.data.tags["tokenizer_id"]  # no step logged twice
        assert max(steps) == 40 if run.data.tags[TIER_TAG] == "full" else max(steps) < 40
    metrics = [Tracker.metrics_of(r) for r in runs]
    values = [{r: m.get(tier_gfid_key(i + 1), np.nan) for i, r in enumerate(TIERS.rungs[:-1])} for m in metrics]
    expected = asha_reaches_full_tier(values, TIERS.rungs, 2)
    assert [r.data.tags[TIER_TAG] == "full" for r in runs] == expected
