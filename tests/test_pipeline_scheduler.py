"""The study engine's scheduler: dependencies, cached jobs, failures and priority with the in-process executor;
DAG order on real Ray and Tune (simulated jobs that sleep and check their inputs exist when they start)."""
from __future__ import annotations

from pathlib import Path

import pytest
from local_ray import local_ray
from test_e2e_study import micro_study

from raysweep.config import parse_study
from raysweep.config.plan import DiffusionJob, Job, StudyPlan, TokenizerJob
from raysweep.engine.events import JobEvent, JobFailed, JobFinished, JobQueued, JobStarted, JobStep
from raysweep.engine.executors import LocalExecutor, RayExecutor, Task
from raysweep.engine.scheduler import Scheduler, remaining_path
from raysweep.engine.store import Store
from raysweep.estimate.gpu_hours import estimate_gpu_hours, job_cost, job_hours
from raysweep.estimate.simulation import simulated_task


def _study(root: Path, tokenizers: int = 3, seeds: int = 1):
    data = micro_study(root)
    data["tokenizers"]["variants"] = [{"regularizer": "baseline", "kl_weight": 10.0 ** -i, "id": f"t{i}"}
                                      for i in range(tokenizers)]
    data["diffusion"]["seeds"] = list(range(seeds))
    return parse_study(data)


def _local(plan: StudyPlan, store: Store, fail: set[str] = frozenset()) -> tuple[Scheduler, list[JobEvent]]:
    jobs, events = plan.by_ref(), []

    def task(job: Job) -> Task:
        if job.id in fail and isinstance(job, TokenizerJob):
            return Task(job.ref, "task", _raise, (job.id,))
        return simulated_task(job, store, jobs, 0.0, {"CPU": 1})

    return Scheduler(plan, store, LocalExecutor({"CPU": 2}), task, events.append), events


def _raise(job_id: str) -> None:
    raise RuntimeError(f"{job_id} diverged")


def test_jobs_run_after_their_deps_and_a_failure_stops_only_its_dependants(tmp_path: Path) -> None:
    study = _study(tmp_path)
    plan, store = StudyPlan.from_spec(study, analyze=False), Store(study.root)
    scheduler, events = _local(plan, store, fail={"t1"})
    result = scheduler.run()
    started = [e.job_id for e in events if isinstance(e, JobStarted)]
    order = {(e.stage, e.job_id): i for i, e in enumerate(events) if isinstance(e, JobFinished)}
    for job in plan:  # every finished job finished after each of its deps
        if job.ref in order:
            assert all(order[d] < order[job.ref] for d in job.deps), job.ref
    assert set(result.failed) == {("tokenizer", "t1"), ("latent_metrics", "t1"), ("model_metrics", "t1"),
                                  ("diffusion", "t1/SiT-T/0"), ("diffusion_metrics", "t1/SiT-T/0")}
    assert result.failed[("tokenizer", "t1")] == "RuntimeError: t1 diverged"
    assert result.failed[("diffusion", "t1/SiT-T/0")] == "not run: tokenizer 't1' failed"
    assert "t1/SiT-T/0" not in started and len(result.finished) == len(plan) - 5
    assert sum(isinstance(e, JobQueued) for e in events) == len(plan)


def test_a_rerun_runs_only_what_is_missing_and_reports_the_rest_cached(tmp_path: Path) -> None:
    study = _study(tmp_path)
    plan, store = StudyPlan.from_spec(study, analyze=False), Store(study.root)
    _local(plan, store, fail={"t1"})[0].run()
    scheduler, events = _local(plan, store)
    result = scheduler.run()
    assert {ref for ref in result.finished} == {j.ref for j in plan if j.id in ("t1", "t1/SiT-T/0")}
    cached = [e for e in events if isinstance(e, JobFinished) and e.cached]
    assert len(cached) == len(plan) - 5 and not result.failed


def test_priority_is_the_longest_remaining_path(tmp_path: Path) -> None:
    plan = StudyPlan.from_spec(_study(tmp_path, tokenizers=2), analyze=False)
    priority = remaining_path(plan, lambda j: 10.0 if isinstance(j, TokenizerJob) else 1.0)
    tok = plan.tokenizers[0]
    # tokenizer 10 -> model or latent metrics 1 -> diffusion 1 -> diffusion metrics 1
    assert priority[tok.ref] == 13.0 and priority[plan.diffusion[0].ref] == 2.0


def test_production_cost_is_the_estimate_lightningdit_xl_before_sit_b(tmp_path: Path) -> None:
    """SiT-B trains 400k steps at batch 256, LightningDiT-XL 100k at 1024 (Table 2): by steps SiT-B would go first,
    by estimated GPU-hours (the same as `raysweep plan --json`) the XL run does."""
    data = micro_study(tmp_path)
    data["tokenizers"]["variants"] = [{"regularizer": "baseline", "id": "t0"}]
    data["diffusion"] = {"variants": [{"backbone": "SiT-B"}, {"backbone": "LightningDiT-XL"}], "seeds": [0]}
    study = parse_study(data)
    plan, store = StudyPlan.from_spec(study, analyze=False), Store(study.root)
    sit, xl = plan.diffusion
    assert (sit.backbone, xl.backbone) == ("SiT-B", "LightningDiT-XL") and sit.trial.steps == 4 * xl.trial.steps
    hours, stages = job_hours(study, plan), estimate_gpu_hours(study)["stages"]
    for run in (sit, xl):  # each run's cost is what the estimate books for its backbone
        booked = sum(stages[s]["by_group"][run.backbone] for s in ("diffusion_training", "sampling", "sample_scoring"))
        assert hours[run.ref] == pytest.approx(booked, rel=1e-12)
    assert hours[xl.ref] > 3 * hours[sit.ref]
    jobs, events = plan.by_ref(), []
    Scheduler(plan, store, LocalExecutor({"CPU": 1}), lambda job: simulated_task(job, store, jobs, 0.0, {"CPU": 1}),
              events.append, cost=job_cost(study, plan)).run()
    started = [e.job_id for e in events if isinstance(e, JobStarted) and e.stage == "diffusion"]
    assert started == [xl.id, sit.id]  # one slot: the order is the priority (plan order would start SiT-B)


@pytest.fixture(scope="module")
def ray_two_cpus():
    with local_ray():
        yield


@pytest.mark.e2e
def test_on_ray_diffusion_of_the_first_tokenizer_starts_while_the_last_trains(tmp_path: Path,
                                                                            ray_two_cpus: None) -> None:
    """2 slots, 3 tokenizers (the last one long, longer than a Tune start on a busy machine): the first
    tokenizer's diffusion run starts before the last tokenizer finishes, and no job starts before its inputs'
    markers exist (a simulated job fails if so). Equal costs: the scheduler knows nothing of the durations."""
    study = _study(tmp_path)
    plan, store = StudyPlan.from_spec(study, analyze=False), Store(study.root)
    jobs, events = plan.by_ref(), []
    seconds = {"t0": 1.0, "t1": 1.5, "t2": 40.0}

    def task(job: Job) -> Task:
        duration = seconds[job.id] if isinstance(job, TokenizerJob) else 1.0 if isinstance(job, DiffusionJob) else 0.2
        return simulated_task(job, store, jobs, duration, {"CPU": 1}, steps=3)

    executor = RayExecutor(str(tmp_path / "tune"), events.append)
    try:
        result = Scheduler(plan, store, executor, task, events.append).run()
    finally:
        executor.close()
    assert not result.failed, result.failed
    first, last = store.done(plan.diffusion[0]), store.done(plan.tokenizers[-1])
    assert first["start"] < last["end"] - 1.0
    steps = [e for e in events if isinstance(e, JobStep) and e.job_id == plan.diffusion[0].id]
    assert [e.step for e in steps] == [1, 2, 3] and steps[-1].metric == "train/loss"
    assert not [e for e in events if isinstance(e, JobFailed)]
    trials = sorted(p.name for p in (tmp_path / "tune").glob("diffusion-*/*") if p.is_dir())
    assert trials == ["t0_SiT-T_0", "t1_SiT-T_0", "t2_SiT-T_0"]  # Tune trials named by study id
