"""Notebook entry point: a study's tidy table straight from any MLflow tracking URI.

    from raysweep import analysis as ra
    table = ra.load_tracked_table("sqlite:///studies/quickstart/mlflow.db", "quickstart")
    ok, excluded = ra.split_excluded(table)
    best = ra.best_cfg_rows(ok)
    ra.correlate(best, ["latent/velocity/viv"], {"latent/velocity/viv": False, "gen/gfid": False})
    ra.regress(best, [["latent/spatial/srss", "latent/semantic/lnc@5"]])
"""
from __future__ import annotations

from collections.abc import Collection

import pandas as pd


def load_tracked_table(tracking_uri: str, experiment: str, planned: Collection[str] | None = None) -> pd.DataFrame:
    """The study's tidy table (`raysweep.tracking.table.study_table`): a row per tokenizer x backbone x seed x CFG
    scale, failed and incomplete runs included with `status` and `reason`; with `planned` (the study plan's job
    keys, `StudyPlan.keys`) without the runs of older inputs (SUPERSEDED, `split_superseded`). ValueError if the
    experiment is absent. MLflow is imported here, on use, so `raysweep.analysis` stays light for the pure
    functions."""
    from raysweep.tracking.table import open_study, split_superseded, study_table

    return split_superseded(study_table(open_study(tracking_uri, experiment), planned=planned))[0]
