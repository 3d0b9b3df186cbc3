"""`raysweep status`: the live view's table for a running or finished study, from the tracking store alone (no
Ray). MLflow runs become the events the engine would have sent (started, then finished / failed), which the same
state machine folds, so both views always agree on what a row means."""
from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from rich.console import Console

from raysweep.config.plan import STAGES, Stage
from raysweep.engine.events import JobEvent, JobFailed, JobFinished, JobQueued, JobStarted
from raysweep.tracking.keys import raysweep_key
from raysweep.tracking.table import replaced_run_ids
from raysweep.tracking.tracker import PARENT_TAG, STAGE_TAG
from raysweep.view.state import StudyState
from raysweep.view.table import jobs_table

HEADLINE = {"tokenizer": "recon/psnr", "latent_metrics": "latent/velocity/viv", "diffusion": "gen/best/gfid",
            "diffusion_metrics": "gen/best/gfid"}  # the metric a finished job's row shows
FAILED_STATUSES = ("FAILED", "KILLED")
REASON_TAG = "raysweep.failure_reason"
PIPE_WIDTH = 160


def run_events(run: Any, job: str) -> list[JobEvent]:
    """A tracked run as job `job`'s (started, then finished or failed) events; none for runs that are not a job
    (the study's own run, runs of other tools)."""
    stage = run.data.tags.get(STAGE_TAG)
    if stage not in STAGES:
        return []
    info = run.info
    started: list[JobEvent] = [JobStarted(job, stage, time=info.start_time / 1000)]
    end = (info.end_time or info.start_time) / 1000
    if info.status == "FINISHED":
        metric = HEADLINE.get(stage)
        value = next((v for k, v in run.data.metrics.items() if raysweep_key(k) == metric), None)
        return [*started, JobFinished(job, stage, time=end, metric=metric if value is not None else None,
                                      value=value)]
    if info.status in FAILED_STATUSES:
        return [*started, JobFailed(job, stage, time=end, reason=run.data.tags.get(REASON_TAG, info.status))]
    return started  # RUNNING or SCHEDULED


def job_ids(runs: Sequence[Any]) -> list[str]:
    """Each run's job id: its name (the engine names runs by study id, `vf/SiT-T/0`), prefixed with its parent
    run's name where several runs share one (runs named per stage only, as before study ids)."""
    names = {r.info.run_id: r.info.run_name for r in runs}
    counts = Counter(names.values())
    return [r.info.run_name if counts[r.info.run_name] == 1 else
            f"{names.get(r.data.tags.get(PARENT_TAG), '?')}/{r.info.run_name}" for r in runs]


def snapshot_events(runs: Iterable[Any], planned: Sequence[tuple[str, Stage]] = (),
                    keys: Collection[str] | None = None) -> list[JobEvent]:
    """Events for every job run, oldest first, then a `JobQueued` for each planned (job id, stage) that the
    store has never seen. With `keys` (the plan's, `StudyPlan.keys`) a run replaced by a run of the same job under
    one of them is left out (`replaced_run_ids`): beside today's run it would double the job's row."""
    runs = list(runs)
    if keys is not None:
        def of(stage: str) -> list[Any]:
            return [r for r in runs if r.data.tags.get(STAGE_TAG) == stage]

        old = replaced_run_ids({r.info.run_id: r for r in of("tokenizer")}, of("diffusion"), keys)
        runs = [r for r in runs if r.info.run_id not in old]
    events = sorted((e for run, job in zip(runs, job_ids(runs)) for e in run_events(run, job)),
                    key=lambda e: e.time)
    seen = {e.job_id for e in events}
    now = time.time()
    return events + [JobQueued(job, stage, time=now) for job, stage in planned if job not in seen]


def render_status(events: Iterable[JobEvent], console: Console | None = None, now: float | None = None,
                  title: str | None = None) -> StudyState:
    """Print the jobs table of a snapshot once (no live refresh); returns the folded state."""
    state = StudyState()
    for event in events:
        state.apply(event)
    if console is None:  # a pipe gets no terminal width: room for a whole row instead of rich's 80 columns
        console = Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)
    console.print(jobs_table(state, time.time() if now is None else now, title=title))
    return state
