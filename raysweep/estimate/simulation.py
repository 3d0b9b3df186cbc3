"""Simulated jobs for the engine's tests and benchmark: the plan's real jobs, run by trials and tasks that sleep.

Each simulated job checks at its start that the markers of everything it depends on exist (else it fails: the
scheduler started it too early), sleeps its duration, and writes its own store marker with its start and end time,
so a test or benchmark reads the schedule back from the store.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raysweep.config.plan import DiffusionJob, Job, TokenizerJob
from raysweep.engine.executors import Task
from raysweep.engine.store import Store


@dataclass(frozen=True)
class Sleep:
    """A simulated job: its marker, the markers it requires, how long it sleeps (in `steps` reports), and the
    record its marker carries."""

    marker: str
    requires: tuple[str, ...]
    seconds: float
    record: dict[str, Any]
    steps: int = 1

    def run(self, report: Any = None) -> None:
        start = time.time()
        missing = [m for m in self.requires if Store.result(Path(m)) is None]
        if missing:
            raise RuntimeError(f"started before its input existed: {missing[0]}")
        for step in range(1, self.steps + 1):
            time.sleep(self.seconds / self.steps)
            if report is not None:
                report({"step": step, "loss": 1.0 / step})
        Store.mark_done(Path(self.marker), {"start": start, "end": time.time(),
                                            "metrics": {"sim/seconds": self.seconds}, "run_id": None, **self.record})


def sleep_trial(config: dict[str, Any]) -> None:
    """A Tune function trainable: `config["sleep"]` is its `Sleep`."""
    from ray import tune

    config["sleep"].run(report=tune.report)


def sleep_task(sleep: Sleep) -> None:
    sleep.run()


def simulated_task(job: Job, store: Store, plan_jobs: dict[Any, Job], seconds: float,
                   resources: dict[str, float], steps: int = 1, tune: bool = True) -> Task:
    """The task of `job` that sleeps `seconds` holding `resources`; trials (tokenizer, diffusion) as Tune trials
    (`tune=False`: every job a plain task)."""
    requires = tuple(str(store.marker(plan_jobs[d])) for d in job.deps if store.marker(plan_jobs[d]) is not None)
    sleep = Sleep(str(store.marker(job)), requires, seconds, job.record(), steps)
    if tune and isinstance(job, (TokenizerJob, DiffusionJob)):
        prefix = "tokenizers" if isinstance(job, TokenizerJob) else "diffusion"
        return Task(job.ref, "trial", sleep_trial, ({"sleep": sleep},), resources,
                    experiment=f"{prefix}-{job.key}", total_steps=steps)
    return Task(job.ref, "task", sleep_task, (sleep,), resources)
