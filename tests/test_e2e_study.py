"""The real pipeline at micro scale: local Ray, sqlite MLflow, Parquet latents, torch-fidelity. Nothing mocked."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from local_ray import local_ray

from raysweep.config import parse_study
from raysweep.config.plan import StudyPlan
from raysweep.engine.status import study_status
from raysweep.tracking import PARENT_TAG, STAGE_TAG, Tracker
from raysweep.tracking.keys import (
    CHECKPOINT_GFID,
    EVALUATION_KEY_TAG,
    EVALUATION_TAG_PREFIX,
    METRIC_VERSION_PREFIX,
    mlflow_name,
)
from raysweep.tracking.table import study_table

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]


def micro_study(root: Path) -> dict:
    return {
        "name": "micro",
        "dataset": {"name": "shapes", "image_size": 16, "num_classes": 4, "train_size": 256, "val_size": 96},
        "reference": {"train_steps": 60, "batch_size": 32},
        "tokenizers": {"architecture": "conv-tiny", "latent": "f2d4", "steps": 30, "batch_size": 16,
                       "variants": [{"regularizer": "baseline"}, {"regularizer": "lcr",
                                                                  "params": {"weight": 1.0, "threshold": 0.95}}]},
        "diffusion": {"backbone": "SiT-T", "steps": 30, "batch_size": 32, "seeds": [0]},
        "evaluation": {"sampling_steps": 4, "cfg_scales": [1.0, 2.0], "num_samples": 64, "trajectory_samples": 8,
                       "checkpoint_samples": 32, "sampler_check": [{"method": "heun", "steps": 4}],
                       "scorers": [{"name": "domain-ae", "train_steps": 50}, "inception-v3-compat"]},  # kept cheap
        "metrics": {"names": ["viv", "sec", "equivariance", "velocity_fisher"], "actors": 2, "batch_size": 32,
                    "params": {"velocity_fisher": {"t_points": 5}}},
        "storage": {"root": str(root), "checkpoint_every": 10},
    }


@pytest.fixture(scope="module")
def ray_local():
    with local_ray():
        yield


def test_micro_study_end_to_end_and_resume(tmp_path: Path, ray_local: None) -> None:
    from raysweep.runner import run_study

    study = parse_study(micro_study(tmp_path / "study"))
    result = run_study(study)
    assert not result.failed, result.failed

    tracker = Tracker(study.tracking_uri, study.experiment_name)
    runs = tracker.runs()
    by_stage: dict[str, list] = {}
    for run in runs:
        by_stage.setdefault(run.data.tags[STAGE_TAG], []).append(run)
    assert {k: len(v) for k, v in by_stage.items()} == {"study": 1, "tokenizer": 2, "diffusion": 2}
    study_id = by_stage["study"][0].info.run_id
    assert "weights_path" in by_stage["study"][0].data.tags["raysweep.scorer_skipped.inception-v3-compat"]
    tokenizer_ids = {r.info.run_id for r in by_stage["tokenizer"]}
    assert all(r.data.tags[PARENT_TAG] == study_id for r in by_stage["tokenizer"])
    assert {r.data.tags[PARENT_TAG] for r in by_stage["diffusion"]} == tokenizer_ids
    assert all(r.info.status == "FINISHED" for r in runs)

    for run in by_stage["tokenizer"]:
        m = Tracker.metrics_of(run)
        for key in ("recon/psnr", "recon/rfid", "latent/velocity/viv", "latent/smoothness/sec@0.25",
                    "latent/smoothness/sec@0.5", "latent/equivariance/consistency"):
            assert key in m, (key, sorted(m))
        assert m["latent/velocity/viv"] > 0 and 0 <= m["latent/smoothness/sec@0.5"] <= 1
        assert -1 <= m["latent/equivariance/consistency"] <= 1
    for run in by_stage["diffusion"]:
        m = Tracker.metrics_of(run)
        for key in ("gen/cfg1/gfid", "gen/cfg2/gfid", "gen/cfg1/is", "gen/best/gfid", "gen/nocfg/gfid",
                    "traj/straightness", "traj/efficiency", "train/loss", "latent/fisher/dm_mmse_mean"):
            assert key in m, (key, sorted(m))
        assert 0 < m["traj/efficiency"] <= 1 + 1e-6
        assert m["gen/sampler/gfid@heun4"] > 0  # the sampler check: re-sampled with Heun at the best scale
        assert m["gen/best/gfid@domain-ae"] > 0 and m["gen/best/fd_floor@domain-ae"] > 0  # the second scorer
        assert "domain-ae:" in run.data.tags["card.extra_scorers"]
        curve = tracker.client.get_metric_history(run.info.run_id, mlflow_name(CHECKPOINT_GFID))
        assert [p.step for p in curve] == [10, 20, 30] and all(p.value > 0 for p in curve)  # convergence curve

    files = sorted((study.root / "latents").glob("*/val/*.parquet"))
    assert len(files) == 2
    schema = pq.read_schema(files[0])
    assert schema.field("latent").type.list_size == 4 * 8 * 8
    assert schema.field("label").type == "int32" and schema.field("sample_id").type == "int64"
    assert b"raysweep.latent_shape" in schema.metadata

    artifacts = {a.path for a in tracker.client.list_artifacts(study_id, "analysis")}
    assert {"analysis/report.html", "analysis/table.csv"} <= artifacts

    # a second run trains nothing and duplicates nothing
    checkpoints = sorted((study.root / "tokenizers").glob("*/tokenizer.pt"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    again = run_study(parse_study(micro_study(tmp_path / "study")))
    assert not again.failed
    assert len(tracker.runs()) == len(runs)
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    history = tracker.client.get_metric_history(by_stage["tokenizer"][0].info.run_id, "train/loss")
    assert len(history) == 30  # one point per step, none re-logged

    # an edited study computes only what the edit changed, on the runs it has: an added metric (lnc) for every
    # tokenizer, the diffusion models re-scored at another CFG grid (never retrained)
    edited = micro_study(tmp_path / "study")
    edited["metrics"]["names"].append("lnc")
    edited["evaluation"]["cfg_scales"] = [1.0, 1.5]
    stale = study_status(parse_study(edited))["stale"]
    assert sorted((s["stage"], s["fields"][0]) for s in stale) == [("diffusion", "evaluation.cfg_scales")] * 2
    models = sorted((study.root / "diffusion").glob("*/velocity_model.pt"))
    model_stamps = [p.stat().st_mtime_ns for p in models]
    diffusion_id = by_stage["diffusion"][0].info.run_id
    steps = len(tracker.client.get_metric_history(diffusion_id, "train/loss"))
    third = run_study(parse_study(edited))
    assert not third.failed, third.failed
    assert len(tracker.runs()) == len(runs)  # no new run
    assert [p.stat().st_mtime_ns for p in checkpoints + models] == stamps + model_stamps
    assert len(tracker.client.get_metric_history(diffusion_id, "train/loss")) == steps  # not retrained
    for run in tracker.runs("tokenizer"):
        m = Tracker.metrics_of(run)
        assert "latent/semantic/lnc@5" in m and run.data.tags[f"{METRIC_VERSION_PREFIX}lnc"] == "1"
        for key in ("latent/velocity/viv", "latent/smoothness/sec@0.5", "latent/equivariance/consistency"):
            assert len(tracker.client.get_metric_history(run.info.run_id, mlflow_name(key))) == 1, key  # once
    for run in tracker.runs("diffusion"):
        assert "gen/cfg1.5/gfid" in Tracker.metrics_of(run)
        assert run.data.tags[f"{EVALUATION_TAG_PREFIX}cfg_scales"] == "[1.0, 1.5]"
        assert run.data.tags[EVALUATION_KEY_TAG] in {j.evaluation_key for j in
                                                     StudyPlan.from_spec(parse_study(edited)).diffusion}
    assert study_status(parse_study(edited))["stale"] == []
    rows = study_table(tracker)  # the scale no longer swept (2.0) stays on the runs in MLflow, not in the table
    assert "gen/cfg2/gfid" in Tracker.metrics_of(tracker.runs("diffusion")[0])
    assert sorted(set(rows["cfg_scale"].dropna())) == [1.0, 1.5]

    # the Python face on the finished study, as a notebook drives it (experiments/notebook.py: a resume that runs
    # nothing, the tidy table, the gFID-vs-VIV figure, `analyze_table`), then each verb on its own
    study_file = tmp_path / "micro.yaml"
    study_file.write_text(yaml.safe_dump(edited))
    out = subprocess.run([sys.executable, str(REPO / "experiments" / "notebook.py"), str(study_file),
                          str(tmp_path / "nb")], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "0 failed" in out.stdout and (tmp_path / "nb" / "gfid_vs_viv.png").stat().st_size > 0
    assert len(tracker.runs()) == len(runs)  # the notebook's run resumed: nothing new

    import raysweep
    from raysweep.analysis import best_cfg_rows, split_excluded

    spec = raysweep.load(study_file)
    assert len(raysweep.plan(spec).diffusion) == 2 and raysweep.status(spec)["stale"] == []
    best = best_cfg_rows(split_excluded(raysweep.table(spec))[0])
    assert sorted(best["tokenizer_id"]) == ["baseline", "lcr"]
    # the floor, on the scorer's features: below each tokenizer's rFID (rFID < gFID needs a scorer that sees more
    # than a 60-step domain network on 96 images does: the benchmark study reports it)
    assert (best["gen/fd_floor"] < best["recon/rfid"]).all()
    analysis = raysweep.analyze_table(best, id="tokenizer_id", target="gen/gfid", out_dir=tmp_path / "again",
                                      metrics=["latent/velocity/viv"])
    assert len(analysis.best) == 2 and (tmp_path / "again" / "report.html").is_file()

    # the reversal experiments' script reads the same tracked runs (2 tokenizers: every r is NaN, but each score the
    # study measured gets its row: the study's gFID, the Heun re-sample, the convergence curve's checkpoints)
    out = subprocess.run([sys.executable, str(REPO / "experiments" / "reversal.py"), str(study_file),
                          str(tmp_path / "reversal")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    relation = pd.read_csv(tmp_path / "reversal" / "relation.csv")
    assert {"gen/gfid", "gen/sampler/gfid@heun4", "conv/gfid@30"} <= set(relation["score"])
    assert (tmp_path / "reversal" / "reversal.md").read_text().startswith("# Reversal experiments: micro")
