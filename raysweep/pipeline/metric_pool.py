"""One latent-metric actor pool per study, kept across tokenizers (instead of a Ray Data pipeline per tokenizer).

The pool's actors start once; a latent-metric job splits its tokenizer's validation Parquet files into row ranges
of `batch_size`, deals them round-robin to the actors, each actor reads its ranges (pyarrow, each file once) and
returns one merged accumulator state per metric; the job merges those and finalizes. Accumulators are exact under
any split, so the numbers equal one in-process pass. The actors ask Ray for no CPU: the scheduler books a job's
CPUs (actors x metric_actor.cpu) while it runs, so an idle pool never blocks a trial (on 2 cores it would
otherwise hold the whole machine for the study). benchmarks/RESULTS-engine.md compares it with the per-tokenizer
Ray Data pipeline.
"""
from __future__ import annotations

import pickle
from typing import Any

import pyarrow.parquet as pq

from raysweep.data import latent_batch_from_columns
from raysweep.data.latents import latent_parts, numpy_columns
from raysweep.data.location import Location
from raysweep.metrics import Accumulator, State, build_metric, check_batch

Span = tuple[str, int, int]  # (path on the latents' filesystem, first row, end row)


class PoolWorker:
    """A Ray actor: configured accumulators, fed row ranges of Parquet files; returns pickled merged states."""

    def __init__(self, torch_threads: int = 1) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(torch_threads)  # see MetricActor: BLAS threads beyond the booked cores only spin
        threadpool_limits(limits=torch_threads)

    def states(self, directory: Location, spans: list[Span], names: list[str], params: dict[str, dict[str, Any]],
               shape: tuple[int, int, int]) -> bytes:
        filesystem = latent_parts(directory)[0]
        metrics = {name: build_metric(name, Accumulator, **params.get(name, {})) for name in names}
        merged = {name: m.init() for name, m in metrics.items()}
        tables: dict[str, Any] = {}
        for path, start, stop in spans:
            if path not in tables:
                tables = {path: pq.read_table(path, filesystem=filesystem)}  # spans come grouped by file
            columns = numpy_columns(tables[path].slice(start, stop - start), path)
            batch = check_batch(latent_batch_from_columns(columns, shape, path))
            for name, m in metrics.items():
                merged[name] = m.merge(merged[name], m.update(m.init(), batch))
        return pickle.dumps(merged, protocol=5)


def spans(directory: Location, batch_size: int) -> list[Span]:
    """Every row of the directory's part files, in ranges of at most `batch_size` rows."""
    filesystem, root, parts = latent_parts(directory)
    out = []
    for part in parts:
        path = f"{root}/{part}"
        rows = pq.ParquetFile(path, filesystem=filesystem).metadata.num_rows
        out += [(path, start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]
    return out


class MetricPool:
    """`size` long-lived `PoolWorker` actors on the connected Ray cluster."""

    def __init__(self, size: int, torch_threads: int = 1) -> None:
        import ray

        worker = ray.remote(PoolWorker).options(num_cpus=0, max_restarts=2, max_task_retries=2)
        self.actors = [worker.remote(torch_threads) for _ in range(size)]

    def merged_states(self, directory: Location, names: list[str], params: dict[str, dict[str, Any]],
                      shape: tuple[int, int, int], batch_size: int) -> dict[str, State]:
        """Every row of `directory` through the pool, states merged here."""
        import ray

        work = spans(directory, batch_size)
        n = min(len(self.actors), len(work))
        share = [work[i * len(work) // n:(i + 1) * len(work) // n] for i in range(n)]  # contiguous: files once
        parts = ray.get([a.states.remote(directory, s, names, params, shape) for a, s in zip(self.actors, share)])
        metrics = {name: build_metric(name, Accumulator, **params.get(name, {})) for name in names}
        merged = {name: m.init() for name, m in metrics.items()}
        for blob in parts:
            for name, state in pickle.loads(blob).items():
                merged[name] = metrics[name].merge(merged[name], state)
        return merged

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
