"""Proxy-guided allocation on complete studies: how much of brute-force diffusion compute it needs (issue 14).

    python benchmarks/allocation_bench.py                          # synthetic studies, r = 0.87 / 0.6 / 0.3
    python benchmarks/allocation_bench.py --seeds 10 --cases 0.87
    python benchmarks/allocation_bench.py --store sqlite:///studies/quickstart/mlflow.db --experiment quickstart \
        --features latent/velocity/viv --metric latent/velocity/viv     # any finished study, same loader

Each replay (`raysweep/search/replay.py`) allocates every tokenizer one at a time in the proxy mode's order and
reveals its measured gFID; after k measurements (k / N = the fraction of brute-force diffusion compute, every
tokenizer costing the same) it records the best measured tokenizer, the metric-gFID Pearson r on measured rows only,
the proxy's posterior-mean r over all tokenizers, and whether the stop rule (defaults) called the answer settled.
Synthetic studies: a new draw per seed (86 tokenizers, VIV-like metric at population r, a useless PSNR-like second
feature), allocator seed = replay seed; a stored study varies the allocator seed only. Baseline: measuring tokenizers
in random order finds the best after k of N with probability k / N (90% needs 90%); its measured-row r is simulated.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from raysweep.config.allocation import ProxyAllocation
from raysweep.search.replay import ReplayStudy, ReplayTrace, load_replay, replay, synthetic_study

TARGET = 0.9       # fraction of replays that must succeed
R_TOLERANCE = 0.1  # |r estimate - r of the complete study|


def first_fraction(ok: np.ndarray, n: int) -> float:
    """Smallest k / n from which at least TARGET of the replays succeed at every later k (ok: replays x k)."""
    rate = ok.mean(axis=0)
    good = rate >= TARGET
    tail = np.flip(np.logical_and.accumulate(np.flip(good)))
    return float((np.argmax(tail) + 1) / n) if tail.any() else float("nan")


def random_r_fraction(study: ReplayStudy, orders: int, rng: np.random.Generator) -> float:
    """The same criterion for measured-row r when tokenizers are measured in random order."""
    n = len(study.ids)
    ok = np.zeros((orders, n), dtype=bool)
    for o in range(orders):
        perm = rng.permutation(n)
        for k in range(3, n + 1):
            r = np.corrcoef(study.metric[perm[:k]], study.gfid[perm[:k]])[0, 1]
            ok[o, k - 1] = abs(r - study.true_r) <= R_TOLERANCE
    return first_fraction(ok, n)


def summarise(name: str, studies: list[ReplayStudy], traces: list[ReplayTrace], seconds: float) -> dict[str, object]:
    n = len(studies[0].ids)
    top1 = np.array([[b == s.best for b in t.best] for s, t in zip(studies, traces)])
    r_post = np.array([np.abs(t.r_posterior - s.true_r) <= R_TOLERANCE for s, t in zip(studies, traces)])
    r_meas = np.array([np.abs(t.r_measured - s.true_r) <= R_TOLERANCE for s, t in zip(studies, traces)])
    stops = [int(np.argmax(t.settled)) if t.settled.any() else n - 1 for t in traces]
    rng = np.random.default_rng(0)
    return {
        "case": name, "n": n, "replays": len(traces), "true_r": float(np.mean([s.true_r for s in studies])),
        "top1": first_fraction(top1, n), "r_posterior": first_fraction(r_post, n),
        "r_measured": first_fraction(r_meas, n),
        "r_measured_random": float(np.median([random_r_fraction(s, 50, rng) for s in studies[:5]])),
        "stop_fraction": float(np.mean([(k + 1) / n for k in stops])),
        "stop_top1": float(np.mean([top1[i, k] for i, k in enumerate(stops)])),
        "stop_r_posterior": float(np.mean([r_post[i, k] for i, k in enumerate(stops)])),
        "seconds_per_replay": seconds / len(traces),
    }


def print_table(rows: list[dict[str, object]]) -> None:
    print("| case | N | replays | r (complete) | top-1 in ≥90% | r ±0.1 (proxy posterior) | r ±0.1 (measured rows) "
          "| same, random order | stop rule: fraction / top-1 right / r ±0.1 | s/replay |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['n']} | {r['replays']} | {r['true_r']:.2f} | {r['top1']:.0%} | "
              f"{r['r_posterior']:.0%} | {r['r_measured']:.0%} | {r['r_measured_random']:.0%} | "
              f"{r['stop_fraction']:.0%} / {r['stop_top1']:.0%} / {r['stop_r_posterior']:.0%} | "
              f"{r['seconds_per_replay']:.1f} |")
    for r in rows:
        print(f"{r['case']}: top-1 found in ≥90% of replays with {r['top1']:.0%} of brute-force diffusion compute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--cases", type=float, nargs="*", default=[0.87, 0.6, 0.3])
    parser.add_argument("--store", help="tracking URI of a finished study (replaces the synthetic cases)")
    parser.add_argument("--experiment")
    parser.add_argument("--features", nargs="+", default=["latent/velocity/viv"])
    parser.add_argument("--metric", default="latent/velocity/viv")
    parser.add_argument("--top-weight", type=float, default=1.0, help="acquisition.top_weight")
    parser.add_argument("--correlation-weight", type=float, default=1.0, help="acquisition.correlation_weight")
    args = parser.parse_args()
    spec = ProxyAllocation(acquisition={"top_weight": args.top_weight, "correlation_weight": args.correlation_weight})
    rows = []
    if args.store:
        study = load_replay(args.store, args.experiment, args.features, args.metric)
        cases = [(study.name, [study] * args.seeds)]
    else:
        cases = [(f"synthetic r={r}", [synthetic_study(r, seed) for seed in range(args.seeds)]) for r in args.cases]
    for name, studies in cases:
        start = time.perf_counter()
        traces = [replay(study, spec, seed) for seed, study in enumerate(studies)]
        rows.append(summarise(name, studies, traces, time.perf_counter() - start))
        print(rows[-1], flush=True)
    print_table(rows)


if __name__ == "__main__":
    main()
