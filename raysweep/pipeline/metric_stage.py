"""Stage 2: stream a tokenizer's validation latents with Ray Data through a pool of metric actors.

Each actor turns a batch into accumulator states (`update` from `init`); the driver merges the states and
finalizes. Accumulators are exact under any split, so the pool size changes the speed and never the numbers.
"""
from __future__ import annotations

import pickle
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from raysweep.config.plan import LatentMetricJob
from raysweep.config.spec import MetricsSpec
from raysweep.data import latent_batch_from_columns, latent_files, read_latent_meta, read_latents
from raysweep.data.latents import latent_parts, numpy_columns
from raysweep.data.location import Location, join
from raysweep.metrics import (
    Accumulator,
    LatentStats,
    State,
    build_metric,
    check_batch,
    compute_metrics,
    metric_info,
)
from raysweep.pipeline.context import TrialContext
from raysweep.pipeline.metric_logging import record_metrics

if TYPE_CHECKING:
    from raysweep.pipeline.metric_pool import MetricPool

READ_CPUS = 0.25  # the CPU share of a Parquet read task
LIST_CPUS = 1.0  # what Ray Data's ListFiles task asks (not configurable in Ray 2.60)
NODE_LOSS_WAITS_S = (5.0, 15.0, 30.0)  # seconds before each retry of a stream that lost a node; then it fails


class MetricActor:
    """A Ray Data callable class: one batch of latent rows in, one row of pickled accumulator states out."""

    def __init__(self, names: list[str], params: dict[str, dict[str, Any]], shape: tuple[int, int, int],
                 torch_threads: int = 1) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        # An actor owns `torch_threads` cores: BLAS threads beyond them spin against the other actors' and
        # multiply the wall time of every GEMM (numpy's OpenBLAS starts one per core by default).
        torch.set_num_threads(torch_threads)
        threadpool_limits(limits=torch_threads)
        self.metrics = {name: build_metric(name, Accumulator, **params.get(name, {})) for name in names}
        self.shape = tuple(shape)

    def __call__(self, table: pa.Table) -> dict[str, np.ndarray]:
        columns = numpy_columns(table, "metric batch")
        batch = check_batch(latent_batch_from_columns(columns, self.shape))  # one validation, shared summaries
        states = {name: m.update(m.init(), batch) for name, m in self.metrics.items()}
        return {"states": np.array([pickle.dumps(states, protocol=5)], dtype=object)}


def with_known_stats(names: list[str], params: dict[str, dict[str, Any]], meta: LatentStats) -> dict[str, dict]:
    """`params` with what each metric takes from the written set's footer statistics (`Accumulator.footer_params`,
    e.g. spatial's channel statistics, without which it holds every latent) under the study's own."""
    out = dict(params)
    for name in names:
        factory = metric_info(name).factory
        known = factory.footer_params(meta) if issubclass(factory, Accumulator) else {}
        if known:
            out[name] = {**known, **params.get(name, {})}
    return out


def resolved_params(names: list[str], params: dict[str, dict[str, Any]],
                    shape: tuple[int, int, int]) -> dict[str, str]:
    """The parameters each metric used on latents of `shape` (e.g. spatial distances scaled to the grid), as
    MLflow tags `metrics.<name>.<param>` (a recomputed metric updates them)."""
    from raysweep.tracking.keys import METRIC_PARAM_PREFIX  # the package imports MLflow: not for `raysweep metrics`

    out = {}
    for name in names:
        used = build_metric(name, Accumulator, **params.get(name, {})).params(shape)
        out.update({f"{METRIC_PARAM_PREFIX}{name}.{k}": str(v) for k, v in used.items()})
    return out


def merged_states(latent_dir: Location, names: list[str], params: dict[str, dict[str, Any]], actors: int,
                  batch_size: int, cpus_per_actor: float = 1.0) -> tuple[dict[str, Accumulator], dict[str, State]]:
    """The streaming half of the stage: every Parquet file of `latent_dir` through the actor pool, states merged
    on the driver. Returns the configured accumulators and their merged states (finalize is the other half)."""
    import ray

    # a directory or a pyarrow.fs URI (s3://...), resolved once: Ray Data reads the same filesystem
    filesystem, root, parts = latent_parts(latent_dir)
    meta = read_latent_meta(join(latent_dir, parts[0]))
    paths = [f"{root}/{part}" for part in parts]
    params = with_known_stats(names, params, meta)
    # Reads take a small CPU share so they never wait behind an actor pool that holds every core. Ray Data's
    # file-listing task takes a whole CPU: an actor that would leave none for it asks for what is left (its
    # thread count is unchanged), else the first actor starts, the listing never runs and the stage hangs.
    threads = max(1, int(cpus_per_actor))
    cpus_per_actor = min(cpus_per_actor, max(0.0, ray.cluster_resources().get("CPU", 0.0) - LIST_CPUS))
    dataset = ray.data.read_parquet(paths, filesystem=filesystem, num_cpus=READ_CPUS).map_batches(
        MetricActor,
        fn_constructor_kwargs={"names": names, "params": params, "shape": meta.shape,
                               "torch_threads": threads},
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        batch_size=batch_size,
        batch_format="pyarrow",  # flattened here without per-row objects
        num_cpus=cpus_per_actor,
    )
    metrics = {name: build_metric(name, Accumulator, **params.get(name, {})) for name in names}
    waits = list(NODE_LOSS_WAITS_S)
    while True:
        try:
            return metrics, _merged_stream(dataset, metrics)
        except Exception as err:  # Ray Data raises its own SystemException, chained to Ray's errors
            if not waits or not _lost_to_a_node(err):
                raise
            wait_s = waits.pop(0)
            print(f"[raysweep] metric pool lost a node ({type(err).__name__}); retrying in {wait_s:g} s", flush=True)
            time.sleep(wait_s)  # until Ray has marked the node dead and schedules elsewhere


def _merged_stream(dataset: Any, metrics: dict[str, Accumulator]) -> dict[str, State]:
    """One full pass of the stream, merged from fresh states (a retry starts over: merges are not idempotent)."""
    merged = {name: m.init() for name, m in metrics.items()}
    for row in dataset.iter_rows():
        for name, state in pickle.loads(row["states"]).items():
            merged[name] = metrics[name].merge(merged[name], state)
    return merged


def _lost_to_a_node(err: BaseException) -> bool:
    """Whether a Ray Data failure is an infrastructure loss (a dead node, actor or worker) that a re-run of the
    same stream survives, rather than an error in the data or metrics. Looks through the whole chain: Ray Data
    raises a SystemException from the task's RayTaskError, or from an UnserializableException that keeps only
    the text of the original error."""
    import ray.exceptions as rex

    lost = (rex.ActorDiedError, rex.ActorUnavailableError, rex.NodeDiedError, rex.ObjectLostError,
            rex.WorkerCrashedError, rex.OwnerDiedError)
    stack: list[BaseException | None] = [err]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, lost) or isinstance(getattr(e, "cause", None), lost):
            return True
        if isinstance(e, rex.UnserializableException) and any(f".{t.__name__}:" in str(e) for t in lost):
            return True
        stack += [e.__cause__, e.__context__]
    return False


def compute_latent_metrics(latent_dir: Location, names: list[str], params: dict[str, dict[str, Any]], actors: int,
                           batch_size: int, cpus_per_actor: float = 1.0) -> dict[str, Any]:
    """Run the metric pool over every Parquet file of `latent_dir`; return `{mlflow_key: value}`."""
    metrics, merged = merged_states(latent_dir, names, params, actors, batch_size, cpus_per_actor)
    values: dict[str, Any] = {}
    for name, m in metrics.items():
        values.update(m.finalize(merged[name]))
    return values


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
    params = with_known_stats(names, {n: p for n, p in spec.params.items() if n in names}, meta)
    if pool is None:
        values = compute_metrics([read_latents(latent_files(latents))[0]], names, params)
    else:
        merged = pool.merged_states(latents, names, params, meta.shape, spec.batch_size)
        values = {}
        for name in names:
            values.update(build_metric(name, Accumulator, **params.get(name, {})).finalize(merged[name]))
    run_id = store.result(store.tokenizer(job.upstream))["run_id"]
    record_metrics(Tracker(ctx.tracking_uri, ctx.experiment), store, job, names, run_id, values,
                   params=resolved_params(names, spec.params, meta.shape))
