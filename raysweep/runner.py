"""A study run: data and the reference network on the driver, then the plan's jobs (tokenizers, their metrics,
diffusion runs and theirs, the analysis) as a DAG on Ray (`scheduler.py`, `executors.py`).

Every job is idempotent (its store marker, `tracking.Tracker.open_run` by tags), so `run_study` is also
`resume_study`.
"""
from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from raysweep.config.errors import ConfigError
from raysweep.config.plan import (
    AnalysisJob,
    ConfirmationSlot,
    DiffusionJob,
    DiffusionMetricJob,
    Job,
    LatentMetricJob,
    ModelMetricJob,
    StudyPlan,
    TokenizerJob,
    TokenizerSearchJob,
)
from raysweep.config.preflight import preflight
from raysweep.config.spec import StudySpec
from raysweep.engine.context import TrialContext
from raysweep.engine.continuation import continuation_interval, continued_steps
from raysweep.engine.events import EventSink, JobEvent, JobFailed, fan_out
from raysweep.engine.executors import Executor, RayExecutor, Task, TrialExecutor
from raysweep.engine.images import prepare_images
from raysweep.engine.metric_pool import MetricPool
from raysweep.engine.migrate import needs_migration
from raysweep.engine.scheduler import Scheduler, ScheduleResult
from raysweep.engine.stage import StageTask, StudyRun
from raysweep.engine.store import Store
from raysweep.engine.study_plan import plan_study, search_outcome
from raysweep.estimate.gpu_hours import job_cost
from raysweep.hashing import config_hash, flatten
from raysweep.stages import analysis, diffusion, latent_metrics, model_metrics, tokenizer
from raysweep.stages import search as tokenizer_search
from raysweep.stages.allocation_gate import proxy_gate
from raysweep.stages.reference import prepare_reference
from raysweep.tracking import Tracker
from raysweep.tracking.keys import HEADLINE

STUDY_STAGE = "study"


@dataclass
class StudyResult:
    study_run_id: str
    finished: list[tuple[str, str]] = field(default_factory=list)  # (stage, id) of jobs run now or found done
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"stage", "id", "error"}
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"stage", "id", "reason"}: not run on purpose
    report: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _log(msg: str) -> None:
    print(f"[raysweep] {msg}", flush=True)


def _init_ray(study: StudySpec, verbose: bool) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if study.ray.address:
        ray.init(address=study.ray.address, log_to_driver=verbose)
    else:
        ray.init(address="local", num_cpus=study.ray.num_cpus, include_dashboard=False, log_to_driver=verbose)


def _context(study: StudySpec, dataset_key: str, study_run_id: str, weights: str | None) -> TrialContext:
    tok = study.resources.tokenizer  # a data-parallel trial's cpu is its workers' total
    threads = study.resources.torch_threads or max(1, int(tok.cpu / tok.workers))
    return TrialContext(root=str(study.root), tracking_uri=study.tracking_uri, experiment=study.experiment_name,
                        study_run_id=study_run_id, dataset_key=dataset_key, num_classes=study.dataset.num_classes,
                        image_size=study.dataset.image_size, feature_network=study.reference.feature_network,
                        feature_weights=weights, torch_threads=threads, log_every=study.storage.checkpoint_every,
                        latent_root=study.latent_storage)


def open_study_run(study: StudySpec, tracker: Tracker) -> str:
    """The root of the run tree, one per study name: editing the study (more tokenizers, another CFG scale) keeps
    the tree whole. Params are those of the first run; the tag and `study.resolved.yaml` follow the latest."""
    run_id = tracker.open_run(study.name, STUDY_STAGE, config_hash({"study": study.name}),
                              params=flatten(study.model_dump(mode="json")))
    tracker.set_tags(run_id, {"raysweep.study_config_hash": study.key()})
    resolved = {**study.model_dump(mode="json"),
                "resolved_tokenizers": [t.model_dump() for t in study.tokenizer_trials],
                "resolved_diffusion": [d.model_dump() for d in study.diffusion_trials]}
    tracker.log_text(run_id, yaml.safe_dump(resolved, sort_keys=False), "study.resolved.yaml")
    return run_id


def run_study(study: StudySpec, analyze: bool = True, sink: EventSink | None = None, verbose: bool = False,
              executor: Executor | None = None) -> StudyResult:
    """Run (or resume) a study on the current Ray cluster (`executor`: another, e.g. a `LocalExecutor`).

    Progress goes to `sink` as typed events; `verbose` also lets Ray workers' logs and Tune's trial tables through
    (off: the view renders the events)."""
    preflight(study)  # bad paths, unwritable storage, missing GPUs: one-line errors before anything is written
    store = Store(study.root, study.latent_storage)
    plan = plan_study(study, store, analyze)  # once per run (and once more when a search has just ended)
    needs_migration(study, plan, store)  # results under the previous version's keys: never reused silently
    study.root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:  # unreadable or inconsistent image data is bad input, reported before anything is tracked
        dataset_key = prepare_images(study.dataset, store)
    except (ValueError, OSError) as err:
        raise ConfigError(study.source, "dataset", str(err)) from None
    tracker = Tracker(study.tracking_uri, study.experiment_name)  # create the DB and experiment before trials
    study_run_id = open_study_run(study, tracker)
    result = StudyResult(study_run_id)
    _log(f"study '{study.name}' in {study.root} (MLflow: {study.tracking_uri}, run {study_run_id})")
    try:
        weights = prepare_reference(study.reference, store, dataset_key, tracker, study_run_id,
                                    study.evaluation.scorers)
        result.seconds["reference"] = time.perf_counter() - t0
        ctx = _context(study, dataset_key, study_run_id, weights)
        emit = fan_out(*([sink] if sink else []), _Book(result))
        pool = None
        if executor is None:
            _init_ray(study, verbose)
            executor = RayExecutor(study.tune_storage, emit, verbose=1 if verbose else 0)
            if plan.of(LatentMetricJob):
                pool = MetricPool(study.metrics.actors, max(1, int(study.resources.metric_actor.cpu)))
        t0 = time.perf_counter()
        try:
            def keep_report(path: str) -> None:
                result.report = path

            def schedule(jobs: StudyPlan, gate: Any = None) -> ScheduleResult:
                cohort = gate.cohort if gate is not None and gate.spec.fidelity is not None else None
                run = StudyRun(study, ctx, pool, jobs, keep_report, cohort,
                               run_jobs=functools.partial(run_in_trial, study, ctx))
                results = list(store.diffusion_results())  # read once: each queued diffusion job looks for its start
                steps_done = functools.partial(continued_steps, store=store, every=continuation_interval(study),
                                               results=results)
                return Scheduler(jobs, store, executor, lambda job: job_task(job, run), emit,
                                 cost=job_cost(study, jobs), headline=lambda job: headline(store, job), gate=gate,
                                 steps_done=steps_done).run()

            searched = None
            if plan.search is not None and store.done(plan.search) is None:
                # a tokenizer search first: its tokenizers, and so the rest of the plan, exist once it has ended
                searched = schedule(StudyPlan((plan.search,)))
                plan = StudyPlan.from_spec(study, analyze, searched=search_outcome(plan.search, store))
            if searched is not None and searched.failed:
                outcome = searched  # the rest of the plan waits for tokenizers the search did not give
            elif plan.of(ConfirmationSlot):  # a search that ended without its result: no stage runs a slot
                search = plan.search
                if search is None:
                    raise RuntimeError("the plan has confirmation slots but no tokenizer search")
                raise RuntimeError(f"the tokenizer search '{search.id}' ended without writing its result "
                                   f"({store.marker(search)}); run again to restore it")
            else:
                tokenizer_search.tag_confirmed(plan, store, tracker)
                gate = proxy_gate(study, plan, store, tracker, on_done=log_predictions(store, tracker, plan))
                outcome = schedule(plan, gate)  # a search that just ended is found finished (cached) here
        finally:
            executor.close()
            if pool is not None:
                pool.close()
        result.seconds["jobs"] = time.perf_counter() - t0
        result.finished = outcome.cached + outcome.finished
        result.skipped = [{"stage": stage, "id": job_id, "reason": why}
                          for (stage, job_id), why in outcome.skipped.items()]
    except BaseException as err:
        tracker.finish(study_run_id, "FAILED" if isinstance(err, Exception) else "KILLED",
                       reason=f"{type(err).__name__}: {err}")
        raise
    tracker.log_metrics(study_run_id, {f"time/{k}_s": v for k, v in result.seconds.items()})
    tracker.finish(study_run_id)
    _log(f"done in {sum(result.seconds.values()):.0f}s; {len(result.failed)} failed job(s)"
         + (f", {len(result.skipped)} skipped" if result.skipped else ""))
    return result


class _Book:
    """Keeps the study result's failures and the analysis report as events arrive."""

    def __init__(self, result: StudyResult) -> None:
        self.result = result

    def __call__(self, event: JobEvent) -> None:
        if isinstance(event, JobFailed):
            self.result.failed.append({"stage": event.stage, "id": event.job_id, "error": event.reason})


def headline(store: Store, job: Job) -> tuple[str, float] | None:
    """The job's headline metric (`tracking.keys.HEADLINE`) from its store result, if it has one."""
    metric = HEADLINE.get(job.stage)
    if metric is None:
        return None
    value = (store.done(job) or {}).get("metrics", {}).get(metric)
    return None if value is None else (metric, float(value))


def log_predictions(store: Store, tracker: Tracker, plan: StudyPlan) -> Callable[[Any, Any], None]:
    """Once the allocation is done: `pred/*` values on the unmeasured tokenizers' runs (never `gen/*`), and the
    `raysweep.gfid_source` tag (measured / predicted) on every allocated tokenizer's run."""
    from raysweep.search.report import predicted_metrics
    from raysweep.tracking.keys import MEASURED, PRED_TAG, PREDICTED

    def log(allocator: Any, state: Any) -> None:
        tokenizers = {t.id: t for t in plan.tokenizers}
        predicted = predicted_metrics(allocator, state)
        for tid in allocator.ids:
            run_id = store.run_id(tokenizers[tid])
            if tid in predicted:
                tracker.log_metrics(run_id, predicted[tid])
            tracker.set_tags(run_id, {PRED_TAG: PREDICTED if tid in predicted else MEASURED})

    return log


# the stage of every job type: what turns a job whose deps are finished into its `Task`
STAGES: dict[type[Job], StageTask] = {
    TokenizerSearchJob: tokenizer_search.task,
    TokenizerJob: tokenizer.task,
    LatentMetricJob: latent_metrics.task,
    ModelMetricJob: model_metrics.task,
    DiffusionJob: diffusion.task,
    DiffusionMetricJob: model_metrics.diffusion_metric_task,
    AnalysisJob: analysis.task,
}


def job_task(job: Job, run: StudyRun) -> Task:
    """The runnable form of a job whose deps are finished, by its stage."""
    stage = STAGES.get(type(job))
    if stage is None:
        raise TypeError(f"no stage runs {type(job).__name__}")
    return stage(job, run)


def run_in_trial(study: StudySpec, ctx: TrialContext, plan: StudyPlan) -> None:
    """Run a sub-plan from inside a Tune trial (a search trial's tokenizer and its metric jobs) through the same
    stages; its progress goes to the driver's view. Raises on the first job that failed."""
    executor = TrialExecutor(study.tune_storage)
    store = ctx.store
    outcome = Scheduler(plan, store, executor, lambda job: job_task(job, StudyRun(study, ctx)), executor.emit,
                        headline=functools.partial(headline, store)).run()
    for (stage, job_id), reason in outcome.failed.items():
        raise RuntimeError(f"{stage} '{job_id}': {reason}")
