"""`raysweep status`: the view's table rebuilt from a real MLflow store (sqlite, written through the Tracker as the
stages write it), without Ray: statuses, headline metrics, failure reasons, elapsed times, planned jobs."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from raysweep.cli import main
from raysweep.tracking import Tracker
from raysweep.tracking.tracker import HASH_TAG
from raysweep.view.snapshot import render_status, snapshot_events


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tracker]:
    """Runs tracked under the keys `demo.yaml`'s plan gives them, and one diffusion run of an older key."""
    from raysweep.config import load_study
    from raysweep.engine.study_plan import plan_study

    root = tmp_path_factory.mktemp("status")
    tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}", "demo")
    (root / "demo.yaml").write_text(yaml.safe_dump({
        "name": "demo", "storage": {"root": str(root / "demo")}, "tracking": {"uri": tracker.tracking_uri},
        "tokenizers": {"architecture": "conv-tiny", "latent": "f2d4",
                       "variants": [{"regularizer": "baseline"}, {"regularizer": "vf", "params": {}}]},
        "diffusion": {"backbone": "SiT-T"}}))
    key = {job.id: job.key for job in plan_study(load_study(root / "demo.yaml")).jobs}
    study = tracker.open_run("demo", "study", "h-study")
    for tok, psnr in (("baseline", 24.5), ("vf", 22.25)):
        run = tracker.open_run(tok, "tokenizer", key[tok], study)
        tracker.log_metrics(run, {"recon/psnr": psnr, "train/loss": 0.1})
        tracker.finish(run)
        if tok == "baseline":  # trained before an edit of the study: same job, another key
            tracker.finish(tracker.open_run("SiT-T/0", "diffusion", "h-old", run))
        diffusion = tracker.open_run("SiT-T/0", "diffusion", key[f"{tok}/SiT-T/0"], run)  # same name under both
        if tok == "vf":
            tracker.finish(diffusion, "FAILED", reason="RuntimeError: CUDA out of memory")
    return root, tracker


def test_snapshot_rows_statuses_metrics_and_reasons(store: tuple[Path, Tracker]) -> None:
    _, tracker = store
    runs = [r for r in tracker.runs() if r.data.tags.get(HASH_TAG) != "h-old"]
    out = io.StringIO()
    state = render_status(snapshot_events(runs, planned=[("lcr", "tokenizer"), ("vf", "tokenizer")]),
                          Console(file=out, width=200), now=0.0)
    rows = state.rows
    assert list(rows) == ["baseline", "baseline/SiT-T/0", "vf", "vf/SiT-T/0", "lcr"]  # start order, then planned
    assert [rows[j].status for j in rows] == ["finished", "running", "finished", "failed", "queued"]
    assert (rows["vf"].metric, rows["vf"].value) == ("recon/psnr", 22.25)
    assert rows["vf/SiT-T/0"].reason == "RuntimeError: CUDA out of memory"
    by_name = {r.info.run_name: r for r in runs if r.info.run_name == "vf"}
    info = by_name["vf"].info
    assert rows["vf"].elapsed(0.0) == pytest.approx((info.end_time - info.start_time) / 1000, abs=1e-3)
    o = state.overview()
    assert (o.total, o.finished, o.running, o.failed, o.queued) == (5, 2, 1, 1, 1)
    text = out.getvalue()
    assert "recon/psnr=24.5" in text and "CUDA out of memory" in text and "2/5 done" not in text
    assert "3/5 done (0 cached), 1 running, 1 failed, 1 queued" in text


def test_status_command_prints_the_table(store: tuple[Path, Tracker], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = store
    assert main(["status", str(root / "demo.yaml")]) == 0
    out = capsys.readouterr().out
    assert "vf/SiT-T/0" in out and "failed" in out and "recon/psnr=22.25" in out
    assert "baseline/SiT-T/0" in out and ", 0 queued" in out  # the older run neither hides nor doubles today's
    (root / "other.yaml").write_text((root / "demo.yaml").read_text().replace("name: demo", "name: other"))
    assert main(["status", str(root / "other.yaml")]) == 2  # never tracked: one line, no experiment created
    assert "no experiment 'other'" in capsys.readouterr().err
