"""The latent-metric stage of a study, on the same Parquet files, two ways (one Ray for the run):

  * in-process   one pass per tokenizer in this process, BLAS and torch on `--actors` threads (the compute the
                 stage has to do on the cores its actors get; the 1.0 of the ratios);
  * pool         the production path: the study's `MetricPool` (`--actors` long-lived actors, one thread each),
                 each tokenizer's latents streamed to it by Ray Data (`read_parquet` blocks), states merged and
                 finalized here. Without start: a pool started before the timing (a study starts it once, before
                 its first tokenizer trial); with start: a fresh pool per repeat, its start (actors up, torch
                 imported in them) inside the timing.
Both read the files and finalize. Each way runs once to warm up, then `--repeats` times: median and spread
(min-max) of the stage's wall time over every tokenizer. Every way gives the same numbers (checked). Goal (issue
28): the pool with its start <= 1.25x the in-process compute at paper scale.

    PYTHONPATH=. python benchmarks/metric_pool_bench.py                       # quickstart: 6 x 500 of 4x8x8
    PYTHONPATH=. python benchmarks/metric_pool_bench.py --n 10000 --shape 32 16 16 --out FILE   # paper scale
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from metrics_bench import synthetic_latents

from raysweep.data import latent_files, read_latent_meta, read_latents, write_latents
from raysweep.engine.metric_pool import MetricPool
from raysweep.metrics import MetricSet

METRICS = ["viv", "sec", "lnc", "spatial"]  # experiments/quickstart.yaml's latent metrics


def repeated(fn: Callable[[], list[dict]], repeats: int) -> tuple[dict[str, float], list[dict]]:
    """One warm-up call, then `repeats` timed ones: {median, min, max, runs} in seconds, and the last values."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs_s": times}, out


def in_process(dirs: list[Path]) -> list[dict]:
    out = []
    for d in dirs:
        batch, meta = read_latents(latent_files(d))
        out.append(MetricSet(METRICS).with_footer(meta).run([batch]))
    return out


def pooled(pool: MetricPool, dirs: list[Path], batch_size: int) -> list[dict]:
    out = []
    for d in dirs:
        meta = read_latent_meta(latent_files(d)[0])
        metrics = MetricSet(METRICS).with_footer(meta)
        out.append(metrics.finalize(pool.merged_states(d, metrics, meta.shape, batch_size)))
    return out


def started(actors: int) -> MetricPool:
    import ray

    pool = MetricPool(actors)
    ray.get([actor.__ray_ready__.remote() for actor in pool.actors])
    return pool


def with_start(actors: int, dirs: list[Path], batch_size: int) -> list[dict]:
    pool = started(actors)
    try:
        return pooled(pool, dirs, batch_size)
    finally:
        pool.close()


def main() -> None:
    import ray
    import torch
    from threadpoolctl import threadpool_limits

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizers", type=int, default=6)
    parser.add_argument("--n", type=int, default=500, help="validation latents per tokenizer (quickstart: 500)")
    parser.add_argument("--shape", type=int, nargs=3, default=[4, 8, 8], metavar=("C", "H", "W"),
                        help="latent shape (quickstart f2d4 at 16 px: 4 8 8; paper f16d32 at 256 px: 32 16 16)")
    parser.add_argument("--actors", type=int, default=2, help="pool actors = in-process threads = Ray CPUs")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rows-per-file", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    shape = tuple(args.shape)
    r: dict = {"command": "PYTHONPATH=. python benchmarks/metric_pool_bench.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if k != "out"), "metrics": METRICS,
        "load_average_1min_before": os.getloadavg()[0]}  # the machine is shared: the figures depend on it
    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for i in range(args.tokenizers):
            latents, labels, _ = synthetic_latents(args.n, shape, 10, seed=i)
            dirs.append(Path(tmp) / f"tok{i}")
            write_latents(dirs[-1], latents, labels, fg_masks=np.ones((args.n, *shape[1:]), np.uint8),
                          tokenizer_id=f"t{i}", rows_per_file=args.rows_per_file)
            del latents
        torch.set_num_threads(args.actors)
        with threadpool_limits(limits=args.actors):
            r["in_process"], local = repeated(lambda: in_process(dirs), args.repeats)
        print(f"in-process: {r['in_process']['median_s']:.2f} s", flush=True)
        ray.init(address="local", num_cpus=args.actors, include_dashboard=False, log_to_driver=False)
        try:
            start = time.perf_counter()
            pool = started(args.actors)
            r["pool_start_once_s"] = time.perf_counter() - start
            r["pool_without_start"], warm = repeated(lambda: pooled(pool, dirs, args.batch_size), args.repeats)
            pool.close()
            print(f"pool without start: {r['pool_without_start']['median_s']:.2f} s", flush=True)
            r["pool_with_start"], fresh = repeated(lambda: with_start(args.actors, dirs, args.batch_size),
                                                   args.repeats)
        finally:
            ray.shutdown()
    for ref, a, b in zip(local, warm, fresh):
        for key, value in ref.items():
            np.testing.assert_allclose(np.asarray(a[key]), np.asarray(value), rtol=1e-4, atol=1e-6, err_msg=key)
            np.testing.assert_allclose(np.asarray(b[key]), np.asarray(value), rtol=1e-4, atol=1e-6, err_msg=key)
    r["load_average_1min_after"] = os.getloadavg()[0]
    base = r["in_process"]["median_s"]
    for way in ("pool_without_start", "pool_with_start"):
        r[f"{way}_over_in_process"] = r[way]["median_s"] / base
    print(f"latent-metric stage, {args.tokenizers} tokenizers x {args.n} latents {shape}, {METRICS}, "
          f"{args.actors} actors / threads, median of {args.repeats} (min-max): in-process "
          + ", ".join(f"{w} {r[w]['median_s']:.2f} s ({r[w]['min_s']:.2f}-{r[w]['max_s']:.2f})"
                      for w in ("in_process", "pool_without_start", "pool_with_start"))
          + f"; pool / in-process: without start {r['pool_without_start_over_in_process']:.2f}x, with start "
            f"{r['pool_with_start_over_in_process']:.2f}x", flush=True)
    if args.out:
        args.out.write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
