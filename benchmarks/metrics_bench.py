"""Latent-metric throughput, as ratios against baselines measured in the same process.

    python benchmarks/metrics_bench.py                     # 10,000 latents of 32x16x16 (the paper's f16d32 @ 256 px)
    python benchmarks/metrics_bench.py --n 2000 --quick    # a smaller smoke run

Reports (all on the same Parquet files):
  * bare scan        read + decode every latent to numpy, nothing else (the floor of any streaming metric);
  * one pass         the streaming metrics (VIV, SEC, spatial, LNC features) in one pass over the same files;
  * ray data k=1/2   the study's metric stage (Ray Data actor pool) with 1 and 2 actors;
  * kronecker vs dense VIV on one class (dense = eigendecomposition of the full d x d covariance).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from raysweep.data import latent_files, write_latents
from raysweep.metrics import compute_metrics, kronecker_eigenvalues, viv_dense, viv_from_eigenvalues

STREAMING = ["viv", "sec", "spatial", "lnc"]


def synthetic_latents(n: int, shape: tuple[int, int, int], classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class means plus spatially smooth noise with a channel mixing: Kronecker-structured, like real latents."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    labels = np.arange(n) % classes
    means = rng.normal(0, 1, (classes, c, h, w)).astype(np.float32)
    mix = rng.normal(0, 1, (c, c)).astype(np.float32) / np.sqrt(c)
    noise = rng.normal(0, 1, (n, c, h, w)).astype(np.float32)
    noise = (noise + np.roll(noise, 1, -1) + np.roll(noise, 1, -2)) / np.sqrt(3)  # spatial correlation
    return means[labels] + np.einsum("dc,nchw->ndhw", mix, noise), labels


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bare_scan(files: list[Path]) -> int:
    total = 0
    for f in files:
        table = pq.read_table(f)
        lat = table["latent"].combine_chunks().flatten().to_numpy()
        total += lat.size
    return total


def one_pass(files: list[Path]) -> dict:
    from raysweep.data import read_latents

    def batches():
        for f in files:
            yield read_latents([f])[0]

    return compute_metrics(batches(), STREAMING)


def ray_stage(directory: Path, actors: int, batch_size: int) -> dict:
    from raysweep.pipeline.metric_stage import compute_latent_metrics

    return compute_latent_metrics(directory, STREAMING, {}, actors=actors, batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 16, 16])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rows-per-file", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="skip the dense VIV baseline and Ray")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    shape = tuple(args.shape)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        latents, labels = synthetic_latents(args.n, shape, args.classes)
        write_latents(tmp, latents, labels, tokenizer_id="bench", rows_per_file=args.rows_per_file)
        files = latent_files(tmp)
        results["bare_scan_s"], _ = timed(lambda: bare_scan(files), repeat=3)
        results["one_pass_s"], _ = timed(lambda: one_pass(files))
        results["one_pass_over_scan"] = results["one_pass_s"] / results["bare_scan_s"]
        print(f"bare scan {results['bare_scan_s']:.2f}s | one pass ({', '.join(STREAMING)}) "
              f"{results['one_pass_s']:.2f}s | ratio {results['one_pass_over_scan']:.2f}x", flush=True)

        if not args.quick:
            import ray

            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            batch = max(64, args.n // 20)
            ray_stage(Path(tmp), 1, batch)  # warm-up: worker start-up is not throughput
            results["ray_1_actor_s"], _ = timed(lambda: ray_stage(Path(tmp), 1, batch))
            results["ray_2_actors_s"], _ = timed(lambda: ray_stage(Path(tmp), 2, batch))
            results["ray_speedup_2_over_1"] = results["ray_1_actor_s"] / results["ray_2_actors_s"]
            ray.shutdown()
            print(f"ray data 1 actor {results['ray_1_actor_s']:.2f}s | 2 actors {results['ray_2_actors_s']:.2f}s | "
                  f"speed-up {results['ray_speedup_2_over_1']:.2f}x", flush=True)

            x = latents[labels == 0].astype(np.float64)
            x = x - x.mean(0)
            d = int(np.prod(shape))
            results["viv_kronecker_s"], lam = timed(lambda: kronecker_eigenvalues(x))
            viv_k = viv_from_eigenvalues(lam, d)
            results["viv_dense_s"], viv_d = timed(lambda: viv_dense(x))
            results["viv_dense_over_kronecker"] = results["viv_dense_s"] / results["viv_kronecker_s"]
            results["viv_relative_difference"] = abs(viv_k - viv_d) / viv_d
            print(f"VIV one class: kronecker {results['viv_kronecker_s']:.3f}s, dense {results['viv_dense_s']:.1f}s "
                  f"({results['viv_dense_over_kronecker']:.0f}x); values {viv_k:.4f} vs {viv_d:.4f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
