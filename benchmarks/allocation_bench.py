"""Every allocation policy on every case (issue 25): how much brute-force diffusion compute each needs before >= 90 %
of replays have measured the true top-1 tokenizer, the same for the metric-gFID r within 0.1 (measured rows), the
sequential rounds and the share of the whole study's compute. Same functions as `raysweep replay`.

    python benchmarks/allocation_bench.py                   # every case x every policy, batch 1
    python benchmarks/allocation_bench.py --batch 4         # launches of 4: sequential rounds
    python benchmarks/allocation_bench.py --tokenizers 20 --cheap-r 0.7   # smaller synthetic studies, a weaker tier

Cases: synthetic studies drawn as the paper's (86 tokenizers, a VIV-like metric at population r 0.87 / 0.6, a useless
PSNR-like feature; a new draw per replay, 20 replays by default, 40 in RESULTS-allocation.md), the same r = 0.6 draws
with a cheap tier (a gFID with population r 0.95 to the full one, each run a fifth of a full run's cost), and the
committed benchmark study's table (`experiments/results/first-design/table.csv`, each tokenizer's best-CFG gFID
averaged over its seeds; a replay = a random 80 % of its 24 tokenizers, 20 subsets by default, 40 there), with VIV
alone or four features as the proxy's. Shares of total compute count tokenizer training + metrics beside diffusion as
`raysweep plan --json` estimates them: Table 1 (`experiments/paper/table1.yaml`) 1,768 vs 9,110 GPU-h for the
synthetic cases, the first benchmark design 0.54 x its diffusion for the benchmark table.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from raysweep.analysis.external import TableColumns, read_table
from raysweep.search.comparison import Comparison, compare
from raysweep.search.policies import policies_for
from raysweep.search.replay import ReplayStudy, study_from_external, subsample, synthetic_study

TABLE1_TOKENIZER_COST = 1767.6 / 9110.2  # non-diffusion / diffusion GPU-h of experiments/paper/table1.yaml
BENCHMARK_TOKENIZER_COST = 0.541         # the same of experiments/benchmark.yaml (`raysweep plan --json`)
BENCHMARK = Path(__file__).resolve().parents[1] / "experiments" / "results" / "first-design" / "table.csv"
BENCHMARK_COLUMNS = TableColumns(id="tokenizer_id", target="gen/best/gfid")


def synthetic_cases(replays: int, tokenizers: int = 86, cheap_r: float = 0.95) -> list[tuple[str, list[ReplayStudy]]]:
    size = "" if tokenizers == 86 else f", n={tokenizers}"
    return [(f"synthetic r={r}{size}" + (f", cheap tier r={cheap}" if cheap else ""),
             [synthetic_study(r, seed, tokenizers, cheap_r=cheap) for seed in range(replays)])
            for r, cheap in ((0.87, None), (0.6, None), (0.6, cheap_r))]


def reuse_untiered(tiered: Comparison, untiered: Comparison) -> Comparison:
    """The cheap tier is drawn after everything else, so a policy that ignores it sees the very studies of the same
    r without one: its row is copied rather than replayed again (a third of the benchmark's time)."""
    return replace(tiered, policies={**untiered.policies, **tiered.policies})


def table_case(features: list[str], replays: int, subset: float) -> tuple[str, list[ReplayStudy]]:
    """The committed benchmark table, resampled as `raysweep replay --table` does."""
    study, _ = study_from_external(read_table(BENCHMARK), BENCHMARK_COLUMNS, features, str(BENCHMARK))
    studies = [subsample(study, subset, np.random.default_rng([seed, 11])) for seed in range(replays)]
    return f"benchmark table ({', '.join(f.split('/')[-1] for f in features)})", studies


def markdown(results: list[Comparison], field: str) -> str:
    """Policies x cases, one field; `–` where a case has no such policy."""
    names = list(dict.fromkeys(n for r in results for n in [*r.policies, *r.reference]))
    lines = ["| policy | " + " | ".join(r.case for r in results) + " |", "|---|" + "---|" * len(results)]
    for name in names:
        cells = []
        for r in results:
            p = r.policies.get(name) or r.reference.get(name)
            value = getattr(p, field) if p else None
            text = "–" if value is None else (f"{value}" if field == "top1_rounds" else f"{value:.0%}")
            cells.append(f"**{text}**" if p and name == r.best else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replays", type=int, default=20, help="synthetic draws per case (default 20)")
    parser.add_argument("--subsets", type=int, default=20, help="benchmark table subsets replayed (default 20)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--subset", type=float, default=0.8)
    parser.add_argument("--tokenizers", type=int, default=86, help="tokenizers per synthetic study (default 86)")
    parser.add_argument("--cheap-r", type=float, default=0.95, help="the cheap tier's population r to gFID")
    args = parser.parse_args()
    cases = [(*case, TABLE1_TOKENIZER_COST) for case in synthetic_cases(args.replays, args.tokenizers, args.cheap_r)]
    cases += [(*table_case(features, args.subsets, args.subset), BENCHMARK_TOKENIZER_COST) for features in
              (["latent/velocity/viv"],
               ["latent/velocity/viv", "latent/semantic/lnc@5", "latent/spatial/srss", "recon/psnr"])]
    results: list[Comparison] = []
    for name, studies, tokenizer_cost in cases:
        start = time.perf_counter()
        policies = policies_for(studies[0])
        tiered = studies[0].cheap is not None
        if tiered:
            policies = [p for p in policies if p.cheap_tier]
        result = compare(studies, policies, args.batch, tokenizer_cost=tokenizer_cost, case=name)
        results.append(reuse_untiered(result, results[-1]) if tiered else result)
        print(f"{name}: {time.perf_counter() - start:.0f} s, n={result.n_tokenizers}, replays={result.replays}, "
              f"r={result.true_r:.2f}, lowest top-1 fraction: {results[-1].best}", flush=True)
    for field, title in (("top1_fraction", "top-1 in >= 90% of replays (fraction of brute-force diffusion)"),
                         ("r_fraction", "r within 0.1 (measured rows) in >= 90% of replays"),
                         ("top1_rounds", "sequential rounds until top-1 (90% of replays)"),
                         ("top1_share_total", "share of the whole study's compute until top-1")):
        print(f"\n{title}\n\n{markdown(results, field)}")


if __name__ == "__main__":
    main()
