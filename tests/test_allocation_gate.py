"""`diffusion.allocation: proxy` in the scheduler: the ProxyGate releases only chosen tokenizers' diffusion jobs,
skips the rest (not failed), persists its state and continues it after a driver restart. Jobs are the plan's real
jobs run in-process (LocalExecutor) writing real store markers; a diffusion job's gFID is a known function of its
tokenizer, and the proxy features are that gFID plus noise, so the proxy is strong and the choices are checkable."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_e2e_study import micro_study

from raysweep.config import parse_study
from raysweep.config.plan import DiffusionJob, Job, StudyPlan, TokenizerJob
from raysweep.engine.events import JobEvent, JobFailed, JobSkipped, JobStarted
from raysweep.engine.executors import LocalExecutor, Task
from raysweep.engine.scheduler import Scheduler
from raysweep.engine.status import study_status
from raysweep.engine.store import Store
from raysweep.estimate.simulation import simulated_task
from raysweep.search.allocation import load_state
from raysweep.stages.allocation_gate import GFID, NOT_CHOSEN, ProxyGate, diffusion_gpu_hours, proxy_gate
from raysweep.tracking import Tracker

N = 8


def _study(root: Path, allocation: object = None, tokenizers: int = N):
    data = micro_study(root)
    data["tokenizers"]["variants"] = [{"regularizer": "baseline", "kl_weight": 10.0 ** -i, "id": f"t{i}"}
                                      for i in range(tokenizers)]
    if allocation is not None:
        data["diffusion"]["allocation"] = allocation
    return parse_study(data)


PROXY = {"mode": "proxy", "budget": {"trials": 4}, "calibration": {"count": 2}, "acquisition": {"draws": 100},
         "stop": {"never": True}}


def _truth(tokenizer_id: str) -> float:
    """The gFID a tokenizer's diffusion runs measure: t3 is best."""
    return 10.0 + (int(tokenizer_id[1:]) - 3) ** 2


def _features(jobs: list[TokenizerJob]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"tokenizer_id": j.id, "latent/x": _truth(j.id) + rng.normal(0, 0.5),
                          "recon/psnr": 20.0 + rng.normal()} for j in jobs])


def _gfid_job(marker: str, value: float, interrupt: list[int], record: dict) -> None:
    if interrupt and interrupt[0] == 0:
        raise KeyboardInterrupt("driver killed")
    if interrupt:
        interrupt[0] -= 1
    Store.mark_done(Path(marker), {"metrics": {GFID: value}, "run_id": None, **record})


def _diverge(job_id: str) -> None:
    raise RuntimeError(f"{job_id} diverged")


def _scheduler(study, interrupt: list[int] | None = None, gate: bool = True, fail: str = "",
               gpu_hours: float | None = None) -> tuple[Scheduler, ProxyGate | None, list[JobEvent]]:
    plan, store = StudyPlan.from_spec(study, analyze=True), Store(study.root)
    jobs, events = plan.by_ref(), []

    def task(job: Job) -> Task:
        if isinstance(job, TokenizerJob) and job.id == fail:
            return Task(job.ref, "task", _diverge, (job.id,))
        if isinstance(job, DiffusionJob):
            return Task(job.ref, "task", _gfid_job, (str(store.marker(job)), _truth(job.tokenizer.id),
                                                     interrupt if interrupt is not None else [], job.record()))
        if job.stage == "analysis":
            return Task(job.ref, "driver", lambda: None)
        return simulated_task(job, store, jobs, 0.0, {"CPU": 1}, tune=False)

    spec = study.allocation
    proxy = ProxyGate(spec, plan, store, _features, seed=study.seed, gpu_hours=gpu_hours) if gate and spec else None
    return Scheduler(plan, store, LocalExecutor({"CPU": 2}), task, events.append, gate=proxy), proxy, events


def test_proxy_releases_only_chosen_tokenizers_and_skips_the_rest(tmp_path: Path) -> None:
    study = _study(tmp_path, PROXY)
    scheduler, gate, events = _scheduler(study)
    result = scheduler.run()
    assert not result.failed and gate is not None
    state = load_state(Store(study.root).allocation_state)
    assert state is not None and state.done == "budget" and state.trials_spent == 4 and not state.pending
    chosen = {t for t, _ in state.measured}
    assert len(chosen) == 4 and "t3" in chosen  # the proxy is strong: the best tokenizer is measured
    started = [e for e in events if isinstance(e, JobStarted)]
    assert {e.job_id.split("/")[0] for e in started if e.stage == "diffusion"} == chosen
    # no diffusion job starts before every tokenizer's metric jobs are over (the allocator needs all of them)
    first_diffusion = next(i for i, e in enumerate(started) if e.stage == "diffusion")
    assert all(e.stage not in ("tokenizer", "latent_metrics", "model_metrics") for e in started[first_diffusion:])
    unchosen = {f"t{i}" for i in range(N)} - chosen
    assert {r for r, why in result.skipped.items() if why == NOT_CHOSEN} == {("diffusion", f"{t}/SiT-T/0")
                                                                              for t in unchosen}
    assert {r for r in result.skipped if r[0] == "diffusion_metrics"} == {("diffusion_metrics", f"{t}/SiT-T/0")
                                                                          for t in unchosen}
    skipped_events = [e for e in events if isinstance(e, JobSkipped)]
    assert len(skipped_events) == 2 * len(unchosen) and not any(isinstance(e, JobFailed) for e in events)
    assert ("analysis", "analysis") in result.finished  # the analysis runs after skipped jobs
    assert dict(state.measured) == {t: _truth(t) for t in chosen}
    assert gate.skipped_tokenizers() == unchosen
    status = study_status(study)["allocation"]
    assert status["done"] == "budget" and status["diffusion_skipped"] == len(unchosen)
    assert set(status["measured"]) == chosen and not status["pending"]
    assert "4 diffusion trials not chosen" in study_status(study, text=True)


def test_allocation_all_runs_exactly_todays_jobs(tmp_path: Path) -> None:
    plain = _study(tmp_path / "a")
    explicit = _study(tmp_path / "b", "all")
    assert explicit.allocation is None
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "allocation-all")
    for study in (plain, explicit):  # what raysweep run builds: no gate, so today's scheduler loop
        assert proxy_gate(study, StudyPlan.from_spec(study), Store(study.root), tracker) is None
    assert [j.key for j in StudyPlan.from_spec(plain)][:-1] == [j.key for j in StudyPlan.from_spec(explicit)][:-1]
    ran = []
    for study in (plain, explicit):
        scheduler, gate, events = _scheduler(study)
        assert gate is None
        result = scheduler.run()
        assert not result.failed and not result.skipped
        ran.append(sorted(result.finished))
    assert ran[0] == ran[1] and len(ran[0]) == len(StudyPlan.from_spec(plain))


def test_a_restarted_driver_continues_the_saved_allocation(tmp_path: Path) -> None:
    whole = _study(tmp_path / "whole", PROXY)
    _scheduler(whole)[0].run()
    reference = load_state(Store(whole.root).allocation_state)

    study = _study(tmp_path / "resumed", PROXY)
    with pytest.raises(KeyboardInterrupt):
        _scheduler(study, interrupt=[2])[0].run()  # killed while the third diffusion job runs
    mid = load_state(Store(study.root).allocation_state)
    assert mid is not None and mid.done is None and mid.pending  # killed mid-allocation
    scheduler, _, events = _scheduler(study)
    result = scheduler.run()
    final = load_state(Store(study.root).allocation_state)
    assert final == reference  # the same choices, in the same order, as without the restart
    assert study_status(study)["allocation"]["done"] == "budget"
    rerun = {e.job_id for e in events if isinstance(e, JobStarted) and e.stage == "diffusion"}
    assert len(rerun) == 4 - 2 and not result.failed  # the two finished runs are cached, not run again


def test_proxy_study_end_to_end_in_process(tmp_path: Path) -> None:
    """`raysweep run` of a proxy-guided study (LocalExecutor, real MLflow and Parquet): only chosen tokenizers get
    diffusion runs; the others get pred/* values (never gen/*) and SKIPPED rows; the analysis correlates measured
    rows only and the report has the allocation section."""
    import mlflow

    from raysweep.runner import run_study
    from raysweep.tracking.keys import GEN_PREFIX, PRED_GFID, PRED_PREFIX, PRED_TAG, PREDICTED

    data = micro_study(tmp_path / "study")
    data["tokenizers"]["variants"] = [{"regularizer": "baseline", "kl_weight": w, "id": f"t{i}"}
                                      for i, w in enumerate((1e-6, 1e-3, 1e-1, 1.0))]
    data["metrics"] = {"names": ["viv", "sec"], "actors": 1, "batch_size": 32}
    data["diffusion"]["allocation"] = {"mode": "proxy", "budget": {"trials": 3}, "calibration": {"count": 2},
                                       "acquisition": {"draws": 100}, "stop": {"never": True}}
    study = parse_study(data)
    result = run_study(study, executor=LocalExecutor({"CPU": 2}))
    assert not result.failed, result.failed
    state = load_state(Store(study.root).allocation_state)
    assert state is not None and state.done == "budget" and len(state.measured) == 3
    measured = state.measured_ids()
    (unmeasured,) = {"t0", "t1", "t2", "t3"} - measured
    assert result.skipped == [{"stage": "diffusion", "id": f"{unmeasured}/SiT-T/0", "reason": NOT_CHOSEN}]

    tracker = Tracker(study.tracking_uri, study.experiment_name)
    assert sorted(r.data.tags["tokenizer_id"] for r in tracker.runs("diffusion")) == sorted(measured)
    for run in tracker.runs("tokenizer"):
        keys = set(Tracker.metrics_of(run))
        assert not any(k.startswith(GEN_PREFIX) for k in keys)
        if run.data.tags["tokenizer_id"] == unmeasured:
            assert PRED_GFID in keys and run.data.tags[PRED_TAG] == PREDICTED
        else:
            assert not any(k.startswith(PRED_PREFIX) for k in keys)
    for run in tracker.runs("diffusion"):
        assert not any(k.startswith(PRED_PREFIX) for k in Tracker.metrics_of(run))

    out = Path(mlflow.artifacts.download_artifacts(run_id=result.study_run_id, artifact_path="analysis",
                                                   tracking_uri=study.tracking_uri, dst_path=str(tmp_path / "a")))
    table = pd.read_csv(out / "table.csv")
    assert not any(c.startswith(PRED_PREFIX) for c in table.columns)
    skipped = table[table["status"] == "SKIPPED"]
    assert list(skipped["tokenizer_id"]) == [unmeasured]
    correlations = pd.read_csv(out / "correlations.csv")
    overall = correlations[(correlations["scope"] == "best_cfg") & correlations["r"].notna()]
    assert len(overall) and (overall["n"] == 3).all()  # the three measured tokenizers, not the predicted one
    excluded = pd.read_csv(out / "excluded.csv")
    assert unmeasured in set(excluded["tokenizer_id"])
    report = (out / "report.md").read_text()
    assert "Proxy-guided allocation" in report and "predicted" in report
    assert "3 tokenizers measured, 1 predicted" in (out / "report.html").read_text()


def test_a_saved_allocation_of_tokenizers_the_study_no_longer_has_is_refused(tmp_path: Path) -> None:
    _scheduler(_study(tmp_path, PROXY))[0].run()
    fewer = _study(tmp_path, PROXY, tokenizers=2)  # the same root, most tokenizers removed
    with pytest.raises(ValueError, match="remove the file"):
        _scheduler(fewer)[0].run()


def test_a_failed_tokenizer_is_left_out_of_the_allocation_and_its_runs_fail(tmp_path: Path) -> None:
    study = _study(tmp_path, PROXY)
    result = _scheduler(study, fail="t3")[0].run()
    state = load_state(Store(study.root).allocation_state)
    assert state is not None and state.done == "budget" and len(state.measured) == 4
    assert "t3" not in state.measured_ids()
    assert result.failed[("diffusion", "t3/SiT-T/0")] == "not run: tokenizer 't3' failed"
    assert ("diffusion", "t3/SiT-T/0") not in result.skipped
    assert len([r for r in result.skipped if r[0] == "diffusion"]) == N - 1 - 4


@pytest.mark.e2e
def test_on_ray_the_proxy_gate_releases_chosen_diffusion_trials_as_tune_trials(tmp_path: Path) -> None:
    """The same gate on the RayExecutor: chosen tokenizers' diffusion jobs run as one-trial Tune experiments, the
    others are skipped and have no Tune experiment."""
    import ray

    from raysweep.engine.executors import RayExecutor

    study = _study(tmp_path, {**PROXY, "budget": {"trials": 3}}, tokenizers=5)
    plan, store = StudyPlan.from_spec(study, analyze=False), Store(study.root)
    jobs, events = plan.by_ref(), []

    def _gfid_trial(config: dict) -> None:  # defined here: Ray workers cannot import this test module
        """A Tune trainable: one reported step, then the diffusion job's marker with its gFID."""
        from ray import tune

        from raysweep.engine.store import Store

        tune.report({"step": 1, "loss": 1.0})
        Store.mark_done(Path(config["marker"]), {"metrics": {"gen/best/gfid": config["gfid"]}, "run_id": None,
                                                 **config["record"]})

    def task(job: Job) -> Task:
        if isinstance(job, DiffusionJob):
            config = {"marker": str(store.marker(job)), "gfid": _truth(job.tokenizer.id), "record": job.record()}
            return Task(job.ref, "trial", _gfid_trial, (config,), {"CPU": 1}, experiment=f"diffusion-{job.key}",
                        total_steps=1)
        return simulated_task(job, store, jobs, 0.0, {"CPU": 1}, tune=False)

    gate = ProxyGate(study.allocation, plan, store, _features, seed=study.seed)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor(str(tmp_path / "tune"), events.append)
        try:
            result = Scheduler(plan, store, executor, task, events.append, gate=gate).run()
        finally:
            executor.close()
    finally:
        ray.shutdown()
    assert not result.failed, result.failed
    state = load_state(store.allocation_state)
    assert state is not None and state.done == "budget" and len(state.measured) == 3
    trials = sorted(p.name.split("_")[0] for p in (tmp_path / "tune").glob("diffusion-*/*") if p.is_dir())
    assert trials == sorted(state.measured_ids())
    assert len([r for r in result.skipped if r[0] == "diffusion"]) == 2


def test_a_gpu_hour_budget_stops_the_allocation(tmp_path: Path) -> None:
    probe = _study(tmp_path / "probe")
    per_tokenizer = diffusion_gpu_hours(probe, StudyPlan.from_spec(probe))  # the plan estimate's, as the runner's
    assert per_tokenizer > 0
    study = _study(tmp_path, {**PROXY, "budget": {"gpu_hours": 3.5 * per_tokenizer}})
    result = _scheduler(study, gpu_hours=per_tokenizer)[0].run()
    state = load_state(Store(study.root).allocation_state)
    assert state is not None and state.done == "budget" and len(state.measured) == 3
    assert state.gpu_hours_spent == pytest.approx(3 * per_tokenizer)
    assert len([r for r in result.skipped if r[0] == "diffusion"]) == N - 3
