"""Simulated jobs for the engine's tests and benchmark: the plan's real jobs, run by trials and tasks that sleep.

Each simulated job checks at its start that the markers of everything it depends on exist (else it fails: the
scheduler started it too early), sleeps its duration, and writes its own store marker with its start and end time,
so a test or benchmark reads the schedule back from the store.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from raysweep.config.plan import DiffusionJob, Job, TokenizerJob
from raysweep.engine.executors import Task
from raysweep.engine.store import Store


def _run(marker: str, requires: list[str], seconds: float, steps: int, record: dict[str, Any],
         report: Any = None) -> None:
    start = time.time()
    missing = [m for m in requires if Store.result(Path(m)) is None]
    if missing:
        raise RuntimeError(f"started before its input existed: {missing[0]}")
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        if report is not None:
            report({"step": step, "loss": 1.0 / step})
    Store.mark_done(Path(marker), {"start": start, "end": time.time(), "metrics": {"sim/seconds": seconds},
                                   "run_id": None, **record})


def sleep_trial(config: dict[str, Any]) -> None:
    """A Tune function trainable: `config["payload"]` holds marker, requires, seconds, steps."""
    from ray import tune

    _run(**config["payload"], report=tune.report)


def sleep_task(marker: str, requires: list[str], seconds: float, record: dict[str, Any]) -> None:
    _run(marker, requires, seconds, 1, record)


def simulated_task(job: Job, store: Store, plan_jobs: dict[Any, Job], seconds: float,
                   resources: dict[str, float], steps: int = 1, tune: bool = True) -> Task:
    """The task of `job` that sleeps `seconds` holding `resources`; trials (tokenizer, diffusion) as Tune trials
    (`tune=False`: every job a plain task)."""
    marker = str(store.marker(job))
    requires = [str(store.marker(plan_jobs[d])) for d in job.deps if store.marker(plan_jobs[d]) is not None]
    if tune and isinstance(job, (TokenizerJob, DiffusionJob)):
        payload = {"marker": marker, "requires": requires, "seconds": seconds, "steps": steps,
                   "record": job.record()}
        prefix = "tokenizers" if isinstance(job, TokenizerJob) else "diffusion"
        return Task(job.ref, "trial", sleep_trial, ({"payload": payload},), resources,
                    experiment=f"{prefix}-{job.key}", total_steps=steps)
    return Task(job.ref, "task", sleep_task, (marker, requires, seconds, job.record()), resources)
