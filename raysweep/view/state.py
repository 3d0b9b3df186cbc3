"""The view's state machine: events in, one row per job out, with step rates and ETAs.

Every time comes from the events themselves (or a `now` the caller passes), never from the clock here, so a replayed
event stream gives the same table and tests can check ETAs against closed forms.

ETA model: a running job's rate is measured between its first and latest step event (startup excluded), so its
remaining time is (total - step) / rate. A job that has not started yet is priced at its stage's mean measured
seconds per step times its total, or, when it has no step count, at its stage's mean duration of finished jobs.
The study's ETA is the remaining job-seconds divided by the parallelism seen so far (the most jobs ever running at
once). Jobs no measurement can price yet are counted in `unpriced`, and the ETA is then a lower bound.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from raysweep.config.plan import Stage
from raysweep.engine.events import JobEvent, JobFailed, JobFinished, JobQueued, JobStarted, JobStep

Status = Literal["queued", "running", "finished", "cached", "failed"]
DONE: tuple[Status, ...] = ("finished", "cached", "failed")


@dataclass(frozen=True)
class JobRow:
    """What the table shows of one job; `first_step`/`first_step_time` anchor its measured step rate."""

    job_id: str
    stage: Stage
    status: Status = "queued"
    step: int = 0
    total: int | None = None
    metric: str | None = None
    value: float | None = None
    started: float | None = None
    ended: float | None = None
    first_step: int | None = None
    first_step_time: float | None = None
    step_time: float | None = None  # time of the latest step event
    reason: str = ""

    @property
    def rate(self) -> float | None:
        """Measured steps per second, or None before two step events with time between them."""
        if self.first_step is None or self.first_step_time is None or self.step_time is None:
            return None
        dt, ds = self.step_time - self.first_step_time, self.step - self.first_step
        return ds / dt if dt > 0 and ds > 0 else None

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else now) - self.started

    def eta(self) -> float | None:
        """Seconds left for a running job from its own rate (0 when done, None when unknown)."""
        if self.status in DONE:
            return 0.0
        rate = self.rate
        if self.status != "running" or rate is None or self.total is None:
            return None
        return max(self.total - self.step, 0) / rate


@dataclass(frozen=True)
class Overview:
    """The study at a glance: counts, the ETA in seconds (None when nothing can be priced), how it was priced."""

    total: int
    queued: int
    running: int
    finished: int  # includes cached
    cached: int
    failed: int
    eta: float | None
    unpriced: int  # unfinished jobs no measurement can price yet: the ETA is a lower bound when > 0
    parallelism: int

    @property
    def done(self) -> int:
        return self.finished + self.failed


class StudyState:
    """Folds events into rows (insertion order = first event order). Not thread safe: callers lock."""

    def __init__(self) -> None:
        self.rows: dict[str, JobRow] = {}
        self.parallelism = 0
        self.first_time: float | None = None
        self.last_time: float | None = None
        self._running = 0  # rows now running, kept per event: a recount per event is O(jobs^2) over a study
        self._costs: tuple[dict[str, float], dict[str, float]] | None = None  # `_stage_costs` until the next event

    def apply(self, event: JobEvent) -> tuple[JobRow | None, JobRow]:
        """Fold one event; returns the job's row before (None if new) and after, so sinks can see status changes."""
        t = event.time
        self.first_time = t if self.first_time is None else min(self.first_time, t)
        self.last_time = t if self.last_time is None else max(self.last_time, t)
        before = self.rows.get(event.job_id)
        row = before or JobRow(event.job_id, event.stage)
        row = replace(row, stage=event.stage)
        if isinstance(event, JobQueued):
            row = replace(row, status="queued", step=event.done,
                          total=event.total if event.total is not None else row.total)
        elif isinstance(event, JobStarted):
            row = replace(row, status="running", started=t, ended=None, step=event.done, first_step=None,
                          first_step_time=None,
                          step_time=None, total=event.total if event.total is not None else row.total)
        elif isinstance(event, JobStep):
            anchor = row.first_step is None
            row = replace(row, status="running", step=event.step, step_time=t,
                          total=event.total if event.total is not None else row.total,
                          started=row.started if row.started is not None else t,
                          metric=event.metric or row.metric, value=event.value if event.metric else row.value,
                          first_step=event.step if anchor else row.first_step,
                          first_step_time=t if anchor else row.first_step_time)
        elif isinstance(event, JobFinished):
            row = replace(row, status="cached" if event.cached else "finished", ended=t,
                          started=row.started if row.started is not None else t,
                          metric=event.metric or row.metric, value=event.value if event.metric else row.value)
        elif isinstance(event, JobFailed):
            row = replace(row, status="failed", ended=t, reason=event.reason,
                          started=row.started if row.started is not None else t)
        self.rows[event.job_id] = row
        self._running += (row.status == "running") - (before is not None and before.status == "running")
        self.parallelism = max(self.parallelism, self._running)
        self._costs = None
        return before, row

    def _stage_costs(self) -> tuple[dict[str, float], dict[str, float]]:
        """Per stage: mean measured seconds per step (from rates) and mean duration of jobs that really ran; computed
        once per state, not once per row priced (a 2,000-job table priced every row from all rows: 2,000^2)."""
        if self._costs is not None:
            return self._costs
        per_step: dict[str, list[float]] = {}
        duration: dict[str, list[float]] = {}
        for r in self.rows.values():
            if r.rate is not None:
                per_step.setdefault(r.stage, []).append(1.0 / r.rate)
            if r.status == "finished" and r.started is not None and r.ended is not None:
                duration.setdefault(r.stage, []).append(r.ended - r.started)
        mean = {k: sum(v) / len(v) for k, v in per_step.items()}
        self._costs = mean, {k: sum(v) / len(v) for k, v in duration.items()}
        return self._costs

    def remaining(self, row: JobRow) -> float | None:
        """Seconds of work left in one job (see the module docstring), or None when nothing prices it yet."""
        own = row.eta()
        if own is not None:
            return own
        per_step, duration = self._stage_costs()
        if row.total is not None and row.stage in per_step:
            return max(row.total - row.step, 0) * per_step[row.stage]
        return duration.get(row.stage)

    def overview(self) -> Overview:
        rows = list(self.rows.values())
        counts = {s: sum(r.status == s for r in rows) for s in ("queued", "running", "finished", "cached", "failed")}
        left = [self.remaining(r) for r in rows if r.status not in DONE]
        priced = [x for x in left if x is not None]
        parallelism = max(self.parallelism, 1)
        eta = sum(priced) / parallelism if priced or not left else None
        return Overview(total=len(rows), queued=counts["queued"], running=counts["running"],
                        finished=counts["finished"] + counts["cached"], cached=counts["cached"],
                        failed=counts["failed"], eta=eta, unpriced=len(left) - len(priced), parallelism=parallelism)
