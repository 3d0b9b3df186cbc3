"""The reversal experiments on a finished study (issue 24): does r(metric, gFID) keep its sign when generation is
measured with another sampler, a shorter training budget, another scorer, or without diffusion at all?

    RAYSWEEP_STORAGE=/path/to/studies PYTHONPATH=. python experiments/reversal.py experiments/benchmark.yaml \
        experiments/results/reversal [--control experiments/results/reversal/control.csv]

Writes `relation.csv` (per metric x score: r with a tokenizer-level bootstrap CI, Spearman, whether it has the
paper's sign, the score's ranking agreement with the study's gFID), `budget.csv` (per tokenizer: gFID at each
checkpoint and its improvement) and `reversal.md`. Reads the study's tracked runs only: it trains nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import raysweep
from raysweep.analysis import best_cfg_rows, split_excluded
from raysweep.analysis.report import markdown_table
from raysweep.analysis.reversal import CONTROL_PREFIX, budget_response, relation_across_scores
from raysweep.metrics import metric_directions

METRICS = ("latent/velocity/viv", "latent/smoothness/sec@0.5", "latent/spatial/lds", "latent/semantic/lnc@5")


def with_control(best: pd.DataFrame, control: Path | None) -> pd.DataFrame:
    """The no-diffusion control's FDs as `control/fd@<perturbation>` columns, joined on the tokenizer replicate
    (tokenizer_id, tokenizer_seed)."""
    if control is None or not control.exists():
        return best
    keys = ["tokenizer_id", "tokenizer_seed"]
    fd = pd.read_csv(control).pivot_table(index=keys, columns="perturbation", values="fd")
    return best.join(fd.add_prefix(CONTROL_PREFIX), on=keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study")
    parser.add_argument("out", type=Path)
    parser.add_argument("--control", type=Path, default=None, help="the CSV of experiments/no_diffusion_control.py")
    args = parser.parse_args()
    study = raysweep.load(args.study)
    best = with_control(best_cfg_rows(split_excluded(raysweep.table(study))[0]), args.control)
    directions = metric_directions()
    metrics = [m for m in METRICS if m in best.columns]
    relation = pd.concat([relation_across_scores(best, m, directions, seed=study.seed).assign(metric=m)
                          for m in metrics], ignore_index=True)
    budget, rho = budget_response(best, METRICS[0], directions)
    args.out.mkdir(parents=True, exist_ok=True)
    relation.to_csv(args.out / "relation.csv", index=False)
    budget.to_csv(args.out / "budget.csv", index=False)
    lines = [f"# Reversal experiments: {study.name}", "",
             f"{best['tokenizer_id'].nunique()} tokenizers, {len(best)} diffusion runs at their best CFG scale. "
             "r: Pearson of the sign-normalised metric (higher = a better latent) with each lower-is-better score; "
             "r < 0 is the paper's direction. CI: tokenizer-level bootstrap (a tokenizer's seed replicates drawn "
             "together).", ""]
    for metric, part in relation.groupby("metric", sort=False):
        lines += [f"## {metric}", "", markdown_table(part.drop(columns="metric")), ""]
    lines += ["## Training budget", "",
              f"Spearman of -VIV with the relative gFID improvement from the first to the last checkpoint: "
              f"{rho:+.2f} (> 0: the lower-VIV tokenizers improve fastest).", "",
              markdown_table(budget) if len(budget) else "no convergence curve in this study", ""]
    (args.out / "reversal.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'reversal.md'}")


if __name__ == "__main__":
    main()
