"""The quickstart driven from Python, as in a notebook: run (or resume) the study, read its tidy table, plot gFID
against VIV per tokenizer, and re-analyse the table with `raysweep.analyze_table`.

    python experiments/notebook.py                      # the quickstart (about 10 minutes on 2 CPU cores)
    python experiments/notebook.py STUDY.yaml OUT_DIR   # any study (CI runs it on a micro study)
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import raysweep  # noqa: E402
from raysweep.analysis import best_cfg_rows, split_excluded  # noqa: E402

study_file = sys.argv[1] if len(sys.argv) > 1 else "experiments/quickstart.yaml"
out = Path(sys.argv[2] if len(sys.argv) > 2 else "studies/notebook")
out.mkdir(parents=True, exist_ok=True)

study = raysweep.load(study_file)
print(f"{len(raysweep.plan(study))} jobs planned")
result = raysweep.run(study, quiet=True)
print(f"{len(result.finished)} jobs finished, {len(result.failed)} failed")

df = raysweep.table(study)
best = best_cfg_rows(split_excluded(df)[0])  # finished runs, each at its best CFG scale
per_tokenizer = best.groupby("tokenizer_id")[["latent/velocity/viv", "gen/gfid"]].mean()
ax = per_tokenizer.plot.scatter(x="latent/velocity/viv", y="gen/gfid")
for name, row in per_tokenizer.iterrows():
    ax.annotate(name, (row["latent/velocity/viv"], row["gen/gfid"]), fontsize=8)
ax.set(xlabel="VIV (lower: a simpler velocity field)", ylabel="gFID at the best CFG scale (lower is better)")
plt.savefig(out / "gfid_vs_viv.png", dpi=120, bbox_inches="tight")
print(f"figure: {out / 'gfid_vs_viv.png'}")

analysis = raysweep.analyze_table(best, id="tokenizer_id", target="gen/gfid", out_dir=out / "analysis",
                                  metrics=["latent/velocity/viv", "latent/smoothness/sec@0.5"])
print(analysis.correlations[["metric", "method", "r", "ci_low", "ci_high", "n"]].head(6).to_string(index=False))
