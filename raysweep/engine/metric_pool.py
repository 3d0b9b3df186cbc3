"""The study's latent-metric engine on Ray: long-lived actors fed by a Ray Data stream of each tokenizer's latents.

The pool's actors start once per study. A latent-metric job reads its tokenizer's validation Parquet with
`ray.data.read_parquet` and deals the stream's blocks (object refs: the rows go from the read task to an actor, not
through the job) to the least-loaded actor, at most `IN_FLIGHT` blocks per actor, which throttles the reads. Each
call returns the `MetricSet` states of one block, merged by the job as they come, so a lost node costs only its
blocks: a block whose object died with it is rebuilt from lineage (its read task alone re-runs), and an actor lost
with it restarts elsewhere and is handed its pending blocks again (`RESTARTS`; tests/test_metric_pool.py loses a
node mid-stream and checks the numbers). States merge exactly under any split, so the numbers equal one in-process
pass. The actors ask Ray for no CPU: the scheduler books a job's CPUs
(actors x metric_actor.cpu) while it runs, so an idle pool never blocks a trial (on 2 cores it would otherwise
hold the whole machine for the study).
"""
from __future__ import annotations

from typing import Any

from raysweep.data import latent_batch_from_columns
from raysweep.data.latents import latent_parts, numpy_columns
from raysweep.data.location import Location
from raysweep.metrics.metric_set import MetricSet, States

READ_CPUS = 0.25  # the CPU share of a Parquet read task
IN_FLIGHT = 2  # blocks handed to one actor at a time: one computing, one arriving
RESTARTS = 3  # an actor lost with its node restarts (and reruns its pending blocks) this often


class PoolWorker:
    """A Ray actor: a block of latent rows (with its slice) in, the `MetricSet` states of its rows out."""

    def __init__(self, torch_threads: int = 1) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        # An actor owns `torch_threads` cores: BLAS threads beyond them spin against the other actors' and
        # multiply the wall time of every GEMM (numpy's OpenBLAS starts one per core by default).
        torch.set_num_threads(torch_threads)
        threadpool_limits(limits=torch_threads)

    def node(self) -> str:
        """The id of the node the actor runs on (where a restart put it)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def states(self, block: Any, rows: tuple[int, int] | None, metrics: MetricSet, shape: tuple[int, int, int],
               batch_size: int) -> States:
        from ray.data.block import BlockAccessor

        table = BlockAccessor.for_block(block).to_arrow()
        start, stop = rows or (0, table.num_rows)
        states = metrics.init()
        for first in range(start, stop, batch_size):
            columns = numpy_columns(table.slice(first, min(batch_size, stop - first)), "latent block")
            states = metrics.update(states, latent_batch_from_columns(columns, shape))
        return states


class MetricPool:
    """`size` long-lived `PoolWorker` actors on the connected Ray cluster."""

    def __init__(self, size: int, torch_threads: int = 1) -> None:
        import ray

        worker = ray.remote(PoolWorker).options(num_cpus=0, max_restarts=RESTARTS, max_task_retries=RESTARTS,
                                                scheduling_strategy="SPREAD")
        # Any: Ray's stubs type an actor's methods without `.remote`
        self.actors: list[Any] = [worker.remote(torch_threads) for _ in range(size)]

    def merged_states(self, directory: Location, metrics: MetricSet, shape: tuple[int, int, int],
                      batch_size: int) -> States:
        """Every row of `directory` (a directory or pyarrow.fs URI of latent Parquet) streamed through the pool by
        Ray Data, in chunks of `batch_size` rows; the states merged here."""
        import ray

        # Ray 2.60's Parquet datasource V2 lists files in a task that starts a pool of footer-reading actors, a
        # start of 2-15 s per stream here; V1 plans from the footers it reads on the spot (0.1 s for a
        # quickstart tokenizer's latents; benchmarks/RESULTS-metrics.md). A job's stream is short: no progress
        # bars or plans in the logs. The dataset keeps a copy of these settings; the process's are restored.
        context = ray.data.DataContext.get_current()
        ours = {"use_datasource_v2": False, "enable_progress_bars": False, "print_on_execution_start": False}
        theirs = {k: getattr(context, k) for k in ours}
        filesystem, root, parts = latent_parts(directory)
        try:
            for k, v in ours.items():
                setattr(context, k, v)
            dataset = ray.data.read_parquet([f"{root}/{part}" for part in parts], filesystem=filesystem,
                                            num_cpus=READ_CPUS)
        finally:
            for k, v in theirs.items():
                setattr(context, k, v)
        merged = metrics.init()
        load = [0] * len(self.actors)
        pending: dict[Any, int] = {}  # a block's result -> the actor computing it

        def merge_one() -> None:
            nonlocal merged
            [done], _ = ray.wait(list(pending), num_returns=1)
            merged = metrics.merge(merged, ray.get(done))
            load[pending.pop(done)] -= 1

        for bundle in dataset.iter_internal_ref_bundles():
            for entry, piece in zip(bundle.blocks, bundle.slices):
                while min(load) >= IN_FLIGHT:
                    merge_one()
                actor = load.index(min(load))
                rows = None if piece is None else (piece.start_offset, piece.end_offset)
                pending[self.actors[actor].states.remote(entry.ref, rows, metrics, shape, batch_size)] = actor
                load[actor] += 1
        while pending:
            merge_one()
        return merged

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
