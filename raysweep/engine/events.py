"""Typed progress events: what the study engine says about its jobs, and what views and `status` render.

The engine (scheduler, executors) emits; sinks render (the terminal view, the plain line log, tests). A job is
named by its study id (`baseline`, `vf`, `vf/SiT-T/0`) and its stage, so a view needs nothing else to draw a row.
Events are plain frozen values: they pickle across Ray and compare equal in tests.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from raysweep.config.plan import Stage


@dataclass(frozen=True)
class JobEvent:
    """Base of every event: which job, of which stage, when (wall clock, seconds since the epoch)."""

    job_id: str
    stage: Stage
    time: float = field(default_factory=time.time, compare=False)


@dataclass(frozen=True)
class JobQueued(JobEvent):
    """The job is planned and waits for its inputs or a free slot. `total` is its step count when known; `done` the
    steps it will not train (a run that continues a shorter one starts there)."""

    total: int | None = None
    done: int = 0


@dataclass(frozen=True)
class JobStarted(JobEvent):
    total: int | None = None
    done: int = 0


@dataclass(frozen=True)
class JobStep(JobEvent):
    """Training progress: `step` of `total`, with the job's main metric (e.g. `train/loss`) when it has one."""

    step: int = 0
    total: int | None = None
    metric: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class JobFinished(JobEvent):
    """Done; `metric`/`value` is the headline result (e.g. `recon/psnr`, `gen/best/gfid`). `cached`: found
    finished in the store, nothing was run."""

    metric: str | None = None
    value: float | None = None
    cached: bool = False


@dataclass(frozen=True)
class JobFailed(JobEvent):
    reason: str = ""


@dataclass(frozen=True)
class JobSkipped(JobEvent):
    """Planned but deliberately not run (e.g. a diffusion run a proxy allocation did not choose); not a failure."""

    reason: str = ""


Event = JobQueued | JobStarted | JobStep | JobFinished | JobFailed | JobSkipped


class EventSink(Protocol):
    """Anything that takes events: a view, a log, a list in a test."""

    def __call__(self, event: JobEvent) -> None: ...


def fan_out(*sinks: EventSink) -> Callable[[JobEvent], None]:
    """One sink that forwards every event to each of `sinks`, in order."""

    def emit(event: JobEvent) -> None:
        for sink in sinks:
            sink(event)

    return emit
