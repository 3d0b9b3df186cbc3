"""Run a study plan as a DAG: a job starts as soon as its dependencies are finished and its resources are free.

No stage barriers: a tokenizer's metrics and diffusion runs start while other tokenizers still train. Among ready
jobs, the one with the longest remaining path to the end of the plan (by `cost`) goes first (critical-path list
scheduling), ties in plan order. A job found finished in the store is not run (`JobFinished(cached=True)`); a failed
job's dependants are not run either (`JobFailed`, naming it), except jobs that `tolerate_failed_deps` (the
analysis, which reports failed runs). A `Gate` may hold jobs back: a job it gates starts only once the gate
releases it, and the jobs it skips (e.g. diffusion runs a proxy allocation did not choose) are reported as
`JobSkipped`, not failed, with their dependants (the analysis still runs). Without a gate every job is released.
A task may run several jobs together (`Task.members`: a cohort, one Tune experiment under ASHA): it starts once all
of them are ready, books its resources once per job, and reports an outcome for each.
Resources are those the executor reports (re-read each round, so a cluster
that gains or loses nodes is followed); a job asking more than the whole executor has is clamped to it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from raysweep.config.plan import Job, JobRef, StudyPlan
from raysweep.engine.events import JobEvent, JobFailed, JobFinished, JobQueued, JobSkipped, JobStarted
from raysweep.engine.executors import Executor, Task
from raysweep.engine.store import Store

POLL_S = 1.0  # how long one wait for outcomes blocks before the scheduler looks at capacity again


@dataclass
class ScheduleResult:
    finished: list[JobRef] = field(default_factory=list)  # run now, in finishing order
    cached: list[JobRef] = field(default_factory=list)  # found finished in the store
    failed: dict[JobRef, str] = field(default_factory=dict)  # job -> reason (its own error or a failed dependency)
    skipped: dict[JobRef, str] = field(default_factory=dict)  # job -> why its gate (or a skipped dep) left it out


class Gate(Protocol):
    """Decides which of the jobs it gates run. The scheduler tells it every job's outcome (`observe`: cached jobs
    first, then each job as it finishes or fails, including jobs failed because a dependency did), asks it about
    each gated job whose deps are done (`release`), and each round collects the jobs it will never release (`skip`:
    ref -> reason; each reported once)."""

    def gates(self, job: Job) -> bool: ...

    def observe(self, job: Job, error: str | None) -> None: ...

    def release(self, job: Job) -> bool: ...

    def skip(self) -> dict[JobRef, str]: ...


def remaining_path(plan: StudyPlan, cost: Callable[[Job], float]) -> dict[JobRef, float]:
    """For each job, its cost plus the longest chain of dependants after it (the critical-path priority)."""
    after: dict[JobRef, list[JobRef]] = {j.ref: [] for j in plan}
    for job in plan:
        for dep in job.deps:
            after[dep].append(job.ref)
    by_ref, out = plan.by_ref(), dict[JobRef, float]()
    for job in reversed(plan.jobs):  # the plan is topologically ordered
        out[job.ref] = cost(job) + max((out[r] for r in after[job.ref]), default=0.0)
    return {r: out[r] for r in by_ref}


def fits(need: dict[str, float], free: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) >= v - 1e-9 for k, v in need.items() if v > 0)


class Scheduler:
    """`task(job)` turns a job whose deps are done into a `Task` (it may read their results from the store);
    `result(job)` is the job's headline (metric, value) for `JobFinished`, or None; `steps_done(job)` the steps of a
    job with a step count that it will not train (a run continuing a shorter one), for the progress events."""

    def __init__(self, plan: StudyPlan, store: Store, executor: Executor, task: Callable[[Job], Task],
                 emit: Callable[[JobEvent], None] = lambda e: None, cost: Callable[[Job], float] = lambda j: 1.0,
                 headline: Callable[[Job], tuple[str, float] | None] = lambda j: None,
                 gate: Gate | None = None, steps_done: Callable[[Job], int] = lambda j: 0) -> None:
        self.plan, self.store, self.executor, self.task, self.emit = plan, store, executor, task, emit
        self.gate = gate
        self.headline = headline
        self.steps_done = steps_done
        self.priority = remaining_path(plan, cost)
        self.order = {j.ref: i for i, j in enumerate(plan)}
        self.jobs = plan.by_ref()

    def _finished(self, job: Job, cached: bool = False) -> None:
        metric, value = self.headline(job) or (None, None)
        self.emit(JobFinished(job.id, job.stage, metric=metric, value=value, cached=cached))

    def run(self) -> ScheduleResult:
        result = ScheduleResult()
        done: set[JobRef] = set()
        waiting: list[Job] = []
        done_steps: dict[JobRef, int] = {}  # steps a queued job will not train (it continues a shorter run)
        for job in self.plan:
            if self.store.done(job) is not None:
                done.add(job.ref)
                result.cached.append(job.ref)
                self._finished(job, cached=True)
                if self.gate is not None:
                    self.gate.observe(job, None)
            else:
                waiting.append(job)
                total = getattr(getattr(job, "trial", None), "steps", None)
                done_steps[job.ref] = self.steps_done(job) if total is not None else 0
                self.emit(JobQueued(job.id, job.stage, total=total, done=done_steps[job.ref]))
        running: dict[JobRef, Task] = {}
        tasks: dict[JobRef, Task] = {}  # made once, when the job is first ready
        while waiting or running:
            self._skip_failed(waiting, result)
            self._skip_gated(waiting, result)
            ready = [j for j in waiting if all(d in done or d in result.skipped
                                               or (d in result.failed and j.tolerate_failed_deps) for d in j.deps)]
            if self.gate is not None:
                gate = self.gate
                ready = [j for j in ready if not gate.gates(j) or gate.release(j)]
            ready.sort(key=lambda j: (-self.priority[j.ref], self.order[j.ref]))
            capacity = self.executor.capacity()
            free = dict(capacity)
            for task in {id(t): t for t in running.values()}.values():  # a cohort task once
                for k, v in self._need(task, capacity).items():
                    free[k] = free.get(k, 0.0) - v
            ready_refs = {j.ref for j in ready}
            for job in ready:
                if job.ref in running:
                    continue  # started this round with its cohort
                if job.ref not in tasks:
                    task = self.task(job)
                    tasks.update({ref: task for ref in task.refs})
                task = tasks[job.ref]
                need = self._need(task, capacity)
                if not ready_refs.issuperset(task.refs) or not fits(need, free):
                    continue  # a cohort starts with all its jobs; a smaller ready job may still fit
                for k, v in need.items():
                    free[k] = free.get(k, 0.0) - v
                for ref in task.refs:
                    started = self.jobs[ref]
                    waiting.remove(started)
                    running[ref] = task
                    self.emit(JobStarted(started.id, started.stage, total=task.total_steps,
                                         done=done_steps[ref]))
                self.executor.submit(task)
            if waiting and not running and not ready:
                raise RuntimeError(f"{len(waiting)} job(s) held with nothing running, e.g. {waiting[0].ref}: "
                                   "the gate neither released nor skipped them")
            for outcome in self.executor.wait(POLL_S):
                job = self.jobs[outcome.ref]
                running.pop(job.ref)
                tasks.pop(job.ref)
                if outcome.error is None:
                    done.add(job.ref)
                    result.finished.append(job.ref)
                    self._finished(job)
                else:
                    result.failed[job.ref] = outcome.error
                    self.emit(JobFailed(job.id, job.stage, reason=outcome.error))
                if self.gate is not None:
                    self.gate.observe(job, outcome.error)
        return result

    def _skip_gated(self, waiting: list[Job], result: ScheduleResult) -> None:
        """Jobs the gate will never release, and (transitively) their dependants that cannot run without them."""
        skipped = self.gate.skip() if self.gate is not None else {}
        changed = True
        while changed:
            changed = False
            for job in list(waiting):
                reason = skipped.get(job.ref)
                if reason is None and not job.tolerate_failed_deps:
                    dep = next((d for d in job.deps if d in result.skipped), None)
                    reason = None if dep is None else f"not run: {dep[0]} '{dep[1]}' skipped"
                if reason is not None:
                    waiting.remove(job)
                    result.skipped[job.ref] = reason
                    self.emit(JobSkipped(job.id, job.stage, reason=reason))
                    changed = True

    @staticmethod
    def _need(task: Task, capacity: dict[str, float]) -> dict[str, float]:
        """What a task holds (a cohort: each of its trials), clamped to the whole capacity (so a job bigger than the
        cluster still runs alone)."""
        return {k: min(v * len(task.refs), capacity.get(k, 0.0)) for k, v in task.resources.items()}

    def _skip_failed(self, waiting: list[Job], result: ScheduleResult) -> None:
        """Jobs that wait for a failed job never run: fail them (and, transitively, their dependants)."""
        changed = True
        while changed:
            changed = False
            for job in list(waiting):
                failed = [d for d in job.deps if d in result.failed]
                if failed and not job.tolerate_failed_deps:
                    waiting.remove(job)
                    reason = f"not run: {failed[0][0]} '{failed[0][1]}' failed"
                    result.failed[job.ref] = reason
                    self.emit(JobFailed(job.id, job.stage, reason=reason))
                    if self.gate is not None:
                        self.gate.observe(job, reason)
                    changed = True

