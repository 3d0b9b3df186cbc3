"""How the engine meets the stages: each stage module exports `task(job, run) -> Task`, the runnable form of a job
of its type; `raysweep.runner` keeps the one `{job type: task}` table (`STAGES`) the scheduler dispatches through.

`StudyRun` is what a stage may use to build its task: the study, the trials' context, and what this run holds
(the metric pool, the plan, where the analysis report goes, the cohort of a diffusion job under ASHA). A stage
reads its inputs from it and from the store; it never imports another stage."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raysweep.config.plan import DiffusionJob, Job, StudyPlan
from raysweep.config.spec import StudySpec, TrialResources
from raysweep.engine.context import TrialContext
from raysweep.engine.executors import Task

if TYPE_CHECKING:
    from raysweep.engine.metric_pool import MetricPool

Report = Callable[[str], None]  # receives the analysis report's artifact path


def _ignore(path: str) -> None:
    pass


@dataclass(frozen=True)
class StudyRun:
    """`pool` runs the latent metrics (None: each job in its own task); `plan` is the run's plan (the analysis
    reads it instead of making its own); `cohort` (multi-fidelity gFID) names the diffusion jobs that run with a
    diffusion job under ASHA; `run_jobs` runs a sub-plan through the same stages (a search trial's tokenizer and
    its metrics)."""

    study: StudySpec
    ctx: TrialContext
    pool: MetricPool | None = None
    plan: StudyPlan | None = None
    report: Report = _ignore
    cohort: Callable[[DiffusionJob], list[DiffusionJob]] | None = None
    run_jobs: Callable[[StudyPlan], None] | None = None


def resources(res: TrialResources, times: float = 1.0) -> dict[str, float]:
    """A stage's resources as Ray names them (a data-parallel trial's: its workers' totals)."""
    return {"CPU": res.cpu * times, **({"GPU": res.gpu * times} if res.gpu else {})}


StageTask = Callable[[Any, StudyRun], Task]  # a stage's `task`, typed by its own job type


def trial_config(job: Job, ctx: TrialContext) -> dict[str, Any]:
    """A stage trainable's Tune config: its typed job and the trials' context (Tune pickles them with the
    experiment, so a restored trial gets them back)."""
    return {"job": job, "ctx": ctx}
