"""Stage 2: a tokenizer's validation latents through the latent metrics of its job (one `MetricSet`), on the
study's metric pool (`metric_pool.py`: Ray Data streams the Parquet to long-lived actors) or in this process."""
from __future__ import annotations

from typing import TYPE_CHECKING

from raysweep.config.plan import LatentMetricJob
from raysweep.config.spec import MetricsSpec
from raysweep.data import latent_files, read_latent_meta, read_latents
from raysweep.engine.context import TrialContext
from raysweep.engine.executors import Task
from raysweep.engine.stage import StudyRun, resources
from raysweep.metrics.metric_set import MetricSet
from raysweep.stages.metric_logging import record_metrics

if TYPE_CHECKING:
    from raysweep.engine.metric_pool import MetricPool


def run_latent_metric_job(ctx: TrialContext, job: LatentMetricJob, spec: MetricsSpec,
                          pool: MetricPool | None = None) -> None:
    """The entry point of a latent-metric job: the tokenizer's validation latents, read once, through the study's
    metric pool (None: one pass in this process, the same numbers) for the job's metrics whose marker entries are
    missing or stale; logged on the tokenizer's run, then their entries in the job's marker."""
    from raysweep.tracking import Tracker

    store = ctx.store
    names = list(job.missing(store.found(job)))
    latents = store.latents(job.upstream, "val")
    meta = read_latent_meta(latent_files(latents)[0])
    metrics = MetricSet(names, {n: p for n, p in spec.params.items() if n in names}).with_footer(meta)
    if pool is None:
        values = metrics.run([read_latents(latent_files(latents))[0]])
    else:
        values = metrics.finalize(pool.merged_states(latents, metrics, meta.shape, spec.batch_size))
    run_id = store.finished(store.tokenizer(job.upstream))["run_id"]
    record_metrics(Tracker(ctx.tracking_uri, ctx.experiment), store, job, names, run_id, values,
                   params=metrics.used_params(meta.shape))


def task(job: LatentMetricJob, run: StudyRun) -> Task:
    """On the study's metric pool the task itself asks nothing (the pool's actors compute on what the scheduler
    books for the job); without one it computes in its own task, holding a metric actor's resources."""
    spec, actor = run.study.metrics, run.study.resources.metric_actor
    if run.pool is None:
        return Task(job.ref, "task", run_latent_metric_job, (run.ctx, job, spec), resources(actor))
    return Task(job.ref, "task", run_latent_metric_job, (run.ctx, job, spec, run.pool),
                resources(actor, spec.actors), ray_resources={})
