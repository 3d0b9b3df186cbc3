"""The latent-metric stage of a quickstart-shaped study, three ways, on the same Parquet files (one Ray per run):

  * in-process   one pass per tokenizer in this process (the compute the stage has to do; the 1.0 of the ratios);
  * Ray Data     today's stage: a Ray Data pipeline (read -> actor pool) started per tokenizer;
  * pool         one `MetricPool` per study, fed row ranges per tokenizer; its start (actors up, torch imported) is
                 timed apart: `run_study` makes the pool before the first tokenizer trial starts, and its actors ask
                 no CPU, so in a study the start overlaps tokenizer training and only the jobs are on the path.
Every way gives the same numbers (checked). Wall times over the in-process compute; goal: stage <= 1.5x.

    PYTHONPATH=. python benchmarks/metric_pool_bench.py [--tokenizers 6] [--n 500] [--actors 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from metrics_bench import synthetic_latents

from raysweep.data import latent_files, read_latents, write_latents
from raysweep.metrics import build_metric, compute_metrics
from raysweep.pipeline.metric_pool import MetricPool
from raysweep.pipeline.metric_stage import compute_latent_metrics, with_known_stats

QUICKSTART = ["viv", "sec", "lnc", "spatial"]  # experiments/quickstart.yaml's latent metrics


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizers", type=int, default=6)
    parser.add_argument("--n", type=int, default=500, help="validation latents per tokenizer (quickstart: 500)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    shape = (4, 8, 8)  # f2d4 at 16 px
    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for i in range(args.tokenizers):
            latents, labels, _ = synthetic_latents(args.n, shape, 10, seed=i)
            dirs.append(Path(tmp) / f"tok{i}")
            write_latents(dirs[-1], latents, labels, fg_masks=np.ones((args.n, 8, 8), np.uint8), tokenizer_id=f"t{i}")

        start, local = time.perf_counter(), []
        for d in dirs:
            batch, meta = read_latents(latent_files(d))
            local.append(compute_metrics([batch], QUICKSTART, with_known_stats(QUICKSTART, {}, meta)))
        in_process = time.perf_counter() - start

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            start = time.perf_counter()
            data = [compute_latent_metrics(d, QUICKSTART, {}, args.actors, args.batch_size) for d in dirs]
            ray_data = time.perf_counter() - start

            start = time.perf_counter()
            pool, pooled = MetricPool(args.actors), []
            ray.get([actor.__ray_ready__.remote() for actor in pool.actors])
            pool_start = time.perf_counter() - start
            start = time.perf_counter()
            for d in dirs:
                meta = read_latents(latent_files(d))[1]
                params = with_known_stats(QUICKSTART, {}, meta)
                merged = pool.merged_states(d, QUICKSTART, params, shape, args.batch_size)
                values: dict = {}
                for name in QUICKSTART:
                    values.update(build_metric(name, **params.get(name, {})).finalize(merged[name]))
                pooled.append(values)
            pool_s = time.perf_counter() - start
            pool.close()
        finally:
            ray.shutdown()
    for ref, a, b in zip(local, data, pooled):
        for key, value in ref.items():
            np.testing.assert_allclose(np.asarray(a[key]), np.asarray(value), rtol=1e-4, atol=1e-6, err_msg=key)
            np.testing.assert_allclose(np.asarray(b[key]), np.asarray(value), rtol=1e-4, atol=1e-6, err_msg=key)
    print(f"latent-metric stage, {args.tokenizers} tokenizers x {args.n} latents {shape}, metrics {QUICKSTART}, "
          f"{args.actors} actors, 2 CPUs: in-process compute {in_process:.2f} s; Ray Data per tokenizer "
          f"{ray_data:.2f} s ({ray_data / in_process:.2f}x); one pool per study: its jobs {pool_s:.2f} s "
          f"({pool_s / in_process:.2f}x), its start {pool_start:.2f} s (with the start "
          f"{(pool_s + pool_start) / in_process:.2f}x)")


if __name__ == "__main__":
    main()
