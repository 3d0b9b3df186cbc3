"""`study_table` on a real MLflow store: a study whose tokenizers have no diffusion run yet still gives a table."""
from __future__ import annotations

from pathlib import Path

from raysweep.tracking import Tracker
from raysweep.tracking.table import SORT_KEYS, study_table


def test_tokenizers_without_diffusion_runs_are_rows_with_no_diffusion(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    study = tracker.open_run("t", "study", "s")
    for tid in ("b", "a"):
        run = tracker.open_run(tid, "tokenizer", f"key-{tid}", parent_id=study, tags={"tokenizer_id": tid})
        tracker.log_metrics(run, {"recon/psnr": 20.0 if tid == "a" else 25.0})
        tracker.finish(run)

    table = study_table(tracker)

    assert list(table["tokenizer_id"]) == ["a", "b"] and set(SORT_KEYS) <= set(table.columns)
    assert set(table["status"]) == {"NO_DIFFUSION"} and table["backbone"].isna().all()
    assert list(table["recon/psnr"]) == [20.0, 25.0]
