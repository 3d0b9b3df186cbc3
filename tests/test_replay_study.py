"""`raysweep replay STUDY.yaml` and `raysweep analyze STUDY.yaml --json` on a real tracked store (sqlite MLflow,
written by the Tracker as test_analysis_study does)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis_study import _log_study, _study_yaml

from raysweep import analysis as ra
from raysweep.cli import main

TOKENIZERS = [f"tok-{t}" for t in range(6)]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("replay")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    _log_study(uri, "demo")
    return _study_yaml(root, uri, "demo", TOKENIZERS), uri


def test_replay_of_a_finished_study(study: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    path, uri = study
    assert main(["replay", str(path), "--replays", "3", "--subset", "1", "--features",
                 "latent/velocity/viv,recon/psnr", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["default"] == "proxy" and out["n_tokenizers"] == len(TOKENIZERS)
    assert {"proxy", "random", "sort:latent/velocity/viv", "sort:recon/psnr", "calibrate-greedy"} <= set(
        out["policies"])
    # independent check: sorting by VIV in the registry's direction (lower is better) measures the best tokenizer
    # (lowest best-CFG gFID, mean over backbones) at its place in that order
    best = ra.best_cfg_rows(ra.split_excluded(ra.load_study(uri, "demo"))[0])
    per_tok = best.groupby("tokenizer_id")[["latent/velocity/viv", "gen/gfid"]].mean()
    place = int(per_tok["latent/velocity/viv"].rank()[per_tok["gen/gfid"].idxmin()])
    sort = out["policies"]["sort:latent/velocity/viv"]
    assert sort["top1_fraction"] == pytest.approx(place / len(TOKENIZERS)) and sort["top1_rounds"] == place
    # tokenizers and metrics (the study's estimate) are paid in every arm: the share of total compute is larger
    for p in out["policies"].values():
        assert 0 < p["top1_fraction"] <= 1 and p["top1_fraction"] <= p["top1_share_total"] <= 1


def test_analyze_json_of_a_tracked_study(study: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    path, uri = study
    assert main(["analyze", str(path), "--n-boot", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == len(TOKENIZERS)
    viv = next(c for c in out["correlations"] if c["metric"] == "latent/velocity/viv" and c["method"] == "pearson")
    best = ra.best_cfg_rows(ra.split_excluded(ra.load_study(uri, "demo"))[0])
    r_raw = np.corrcoef(best["latent/velocity/viv"], pd.to_numeric(best["gen/gfid"]))[0, 1]
    assert viv["r_raw"] == pytest.approx(r_raw) and viv["r"] == pytest.approx(-r_raw)  # VIV: lower is better
