"""Replays: a tidy study table becomes per-tokenizer replay inputs; on a hand-made table every policy's answer is
known in closed form; `raysweep replay --table --json` prints them under `policies`, references apart."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysweep.cli import main
from raysweep.search.comparison import compare, outcome
from raysweep.search.policies import policies_for, proxy_order
from raysweep.search.replay import ReplayStudy, study_from_table, synthetic_study

N = 10


def _table() -> pd.DataFrame:
    rows = []
    for t, viv in (("a", 0.1), ("b", 0.5), ("c", 0.9), ("d", 0.3)):
        for backbone, offset in (("SiT-T", 0.0), ("LightningDiT-T", 1.0)):
            for cfg, extra in ((1.0, 2.0), (1.5, 0.0), (2.0, 0.5)):
                rows.append({"tokenizer_id": t, "backbone": backbone, "seed": 0, "cfg_scale": cfg,
                             "status": "FINISHED", "latent/velocity/viv": viv, "gen/gfid": 10 * viv + offset + extra})
    rows.append({"tokenizer_id": "e", "backbone": "SiT-T", "seed": 0, "cfg_scale": 1.0, "status": "FAILED",
                 "latent/velocity/viv": 0.2, "gen/gfid": np.nan})
    return pd.DataFrame(rows)


def test_study_from_table_takes_best_cfg_mean_over_backbones_and_drops_failed() -> None:
    study = study_from_table(_table(), ["latent/velocity/viv"], "latent/velocity/viv", "toy",
                             directions={"latent/velocity/viv": False})
    assert study.ids == ("a", "b", "c", "d") and study.better == (False,)
    np.testing.assert_allclose(study.gfid, [10 * v + 0.5 for v in (0.1, 0.5, 0.9, 0.3)])  # best CFG 1.5
    np.testing.assert_allclose(study.metric, [0.1, 0.5, 0.9, 0.3])
    assert study.best == "a" and study.true_r == pytest.approx(1.0)
    with pytest.raises(ValueError, match="columns"):
        study_from_table(_table(), ["latent/semantic/lnc@5"], "latent/velocity/viv")


def test_proxy_choices_are_deterministic_and_measure_every_tokenizer_once() -> None:
    study = synthetic_study(0.87, seed=3, n=16)
    first, again = proxy_order(study, 3, 1), proxy_order(study, 3, 1)
    assert first == again and sorted(sum(first, [])) == list(range(16))
    assert len(first[0]) == 4 and all(len(b) <= 3 for b in first[1:])  # calibration, then batches of 3


def _hand_made() -> pd.DataFrame:
    """gFID = 1..N; `good` is gFID itself (declared lower-is-better: sorts the best first), `bad` its negative
    (declared lower-is-better: sorts the best last), `cheap` a perfect cheap tier, `cost` 1 except the best's 3."""
    gfid = np.arange(1.0, N + 1)
    rows = pd.DataFrame({"vae": [f"v{i}" for i in range(N)], "fid": gfid, "good": gfid, "bad": -gfid,
                         "cheap": gfid + 0.5, "cost": np.where(gfid == 1, 3.0, 1.0)})
    return pd.concat([rows, rows.assign(fid=rows["fid"] + 0.1)], ignore_index=True)  # seeds: averaged (+0.05)


def test_every_policy_on_a_hand_made_table_gives_its_known_answer(tmp_path: Path, capsys) -> None:
    _hand_made().to_csv(tmp_path / "t.csv", index=False)
    assert main(["replay", "--table", str(tmp_path / "t.csv"), "--id", "vae", "--target", "fid", "--features",
                 "good,bad", "--lower-is-better", "good,bad", "--cost", "cost", "--cheap", "cheap",
                 "--cheap-cost", "0.1", "--tokenizer-cost", "1", "--subset", "1", "--replays", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    p, brute = out["policies"], N + 2.0  # the best costs 3
    assert out["default"] == "proxy" and set(out["reference"]) == {"oracle_top1", "brute_force"}
    assert set(p) == {"proxy", "random", "sort:good", "sort:bad", "calibrate-greedy", "information", "cheap"}
    assert all(0 < v["top1_fraction"] <= 1 for v in p.values())
    assert p["sort:good"]["top1_fraction"] == pytest.approx(3 / brute) and p["sort:good"]["top1_rounds"] == 1
    assert p["sort:good"]["top1_share_total"] == pytest.approx((N + 3) / (N + brute))  # tokenizers paid in both
    assert p["sort:bad"]["top1_fraction"] == 1.0  # the best comes last: every tokenizer
    assert p["cheap"]["top1_fraction"] == pytest.approx(0.1 + 3 / brute) and p["cheap"]["top1_rounds"] == 2
    # calibration's 4 picks span the feature range, so they include the best: one round, at most 4 tokenizers
    for name in ("calibrate-greedy", "information"):
        assert p[name]["top1_rounds"] == 1 and p[name]["top1_fraction"] == pytest.approx(6 / brute)
    # the proxy pays the cheap tier, then calibrates on its 4 lowest gFIDs (the best among them): one batch more
    assert p["proxy"]["top1_fraction"] == pytest.approx(0.1 + 6 / brute) and p["proxy"]["top1_rounds"] == 2
    assert 0.5 <= p["random"]["top1_fraction"] <= 1.0  # 10 random orders: the 9th-fastest finds the best late
    assert out["reference"]["oracle_top1"]["top1_fraction"] == pytest.approx(3 / brute)
    # the measured-rows r is exact once every tokenizer is in, and 1.0 for these rows from the third on
    assert p["sort:good"]["r_fraction"] == pytest.approx(5 / brute)


def test_batches_count_sequential_rounds_and_spend_whole_batches() -> None:
    gfid = np.array([3.0, 1.0, 2.0, 4.0, 5.0])
    study = ReplayStudy("toy", tuple("abcde"), ("m",), gfid[:, None], "m", gfid, gfid, (False,))
    result = outcome(study, [[0, 2], [1, 3], [4]])
    assert result.top1_spend == pytest.approx(4 / 5) and result.top1_rounds == 2
    comparison = compare([study], policies_for(study)[:1], batch=2)
    assert comparison.policies["proxy"].top1_rounds >= 1
    with pytest.raises(ValueError, match="exactly once"):
        outcome(study, [[0, 1]])


def test_a_bad_replay_column_is_one_error_line(tmp_path: Path, capsys) -> None:
    _hand_made().to_csv(tmp_path / "t.csv", index=False)
    code = main(["replay", "--table", str(tmp_path / "t.csv"), "--id", "vae", "--target", "fid", "--cheap", "cheep"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--cheap: column 'cheep'" in err[0] and str(tmp_path / "t.csv") in err[0]
    assert "allowed: bad, cheap, cost, fid, good, vae" in err[0]
