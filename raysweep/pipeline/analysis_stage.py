"""Stage 4: tracked runs -> tidy table -> correlations, joint regressions, figures, HTML report on the study run."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from raysweep.analysis import (
    best_cfg_rows,
    correlate,
    correlation_bar,
    heatmap,
    pairwise_joint,
    perspective_ranking,
    scatter_grid,
    split_excluded,
    write_report,
)
from raysweep.config.spec import StudySpec
from raysweep.metrics import metric_directions
from raysweep.tracking import Tracker
from raysweep.tracking.table import study_table

TARGET = "gen/gfid"


def _directions(table: pd.DataFrame) -> dict[str, bool]:
    latent = [c for c in table.columns if c.startswith("latent/")]
    directions = {k: v for k, v in metric_directions().items() if k in latent}
    directions.update({"recon/psnr": True, "recon/rfid": False, "traj/straightness": True,
                       "traj/efficiency": True})
    return {k: v for k, v in directions.items() if k in table.columns and table[k].notna().sum() >= 3
            and table[k].nunique() > 1}


def analyze_study(study: StudySpec, tracker: Tracker, study_run_id: str) -> str | None:
    """Write every analysis artifact to the study run; return the report's artifact path (or None if no data)."""
    table = study_table(tracker)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "analysis"
        out.mkdir()
        if not table.empty:
            table.to_csv(out / "table.csv", index=False)
            table.to_parquet(out / "table.parquet", index=False)
        ok, excluded = split_excluded(table, target=TARGET) if not table.empty else (table, table)
        best = best_cfg_rows(ok) if not ok.empty else ok
        directions = _directions(best) if len(best) >= 3 else {}
        figures: list[Path] = []
        corr = pd.DataFrame()
        regressions = pd.DataFrame()
        if directions:
            metrics = sorted(directions)
            directions[TARGET] = False  # lower gFID is better
            corr = correlate(best, metrics, target=TARGET, directions=directions, seed=study.seed)
            corr.to_csv(out / "correlations.csv", index=False)
            latent = [m for m in metrics if m.startswith("latent/")]
            figures += scatter_grid(best, metrics, TARGET, directions, out / "scatter_gfid.png")
            figures += correlation_bar(corr, out / "correlations.png")
            if len(latent) >= 2:
                figures += heatmap(best, latent, out / "metric_heatmap.png")
                regressions = pairwise_joint(best, latent, TARGET)
                regressions.to_csv(out / "joint_ols.csv", index=False)
            perspective_ranking(corr).to_csv(out / "perspective_ranking.csv", index=False)
        report = write_report(out, study.name, best, corr, regressions, figures, excluded)
        tracker.log_artifact(study_run_id, out, None)
    return f"analysis/{Path(report).name}"
