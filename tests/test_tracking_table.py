"""`study_table` on a real MLflow store: a study whose tokenizers have no diffusion run yet still gives a table."""
from __future__ import annotations

from pathlib import Path

import numpy as np

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


def test_a_run_asha_stopped_is_a_stopped_row_the_analysis_excludes(tmp_path: Path) -> None:
    """A diffusion run stopped at a cheap tier is FINISHED in MLflow but not a measured row: status STOPPED with
    its rung, no gen/ values (its tier/ value never becomes a table metric), excluded from the analysis."""
    from raysweep.analysis.tidy import split_excluded
    from raysweep.tracking.keys import FULL_TIER, STOPPED, TIER_RUNG, TIER_TAG, tier_gfid_key

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    study = tracker.open_run("t", "study", "s")
    for tid, tier in (("a", FULL_TIER), ("b", STOPPED)):
        tok = tracker.open_run(tid, "tokenizer", f"key-{tid}", parent_id=study, tags={"tokenizer_id": tid})
        tracker.finish(tok)
        run = tracker.open_run(f"{tid}/SiT-T/0", "diffusion", f"d-{tid}", parent_id=tok,
                               tags={"tokenizer_id": tid, "backbone": "SiT-T", "seed": 0, TIER_TAG: tier})
        tracker.log_metrics(run, {tier_gfid_key(1): 9.0, TIER_RUNG: 1 if tier == STOPPED else 3,
                                  **({"gen/cfg1/gfid": 5.0, "gen/best/gfid": 5.0} if tier == FULL_TIER else {})})
        tracker.finish(run)

    table = study_table(tracker)
    rows = table.set_index("tokenizer_id")
    assert rows.loc["a", "status"] == "FINISHED" and rows.loc["a", "gen/gfid"] == 5.0
    assert rows.loc["b", "status"] == "STOPPED" and rows.loc["b", "reason"] == "b/SiT-T/0: stopped at rung 1 by ASHA"
    assert not any(c.startswith("tier/") for c in table.columns)
    ok, excluded = split_excluded(table)
    assert list(ok["tokenizer_id"]) == ["a"] and list(excluded["tokenizer_id"]) == ["b"]
    assert "stopped at rung 1 by ASHA" in excluded["reason"].iloc[0]


def test_cheap_gfid_per_checkpoint_becomes_curve_columns(tmp_path: Path) -> None:
    """A run's `CHECKPOINT_GFID` history, or else its cheap ASHA rungs, become `conv/gfid@<step>` columns; its
    sampler-check values are columns of their own."""
    from raysweep.tracking.keys import CHECKPOINT_GFID, checkpoint_gfid_column, sampler_gfid_key, tier_gfid_key

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    study = tracker.open_run("t", "study", "s")
    tok = tracker.open_run("a", "tokenizer", "key-a", parent_id=study, tags={"tokenizer_id": "a"})
    tracker.finish(tok)
    for seed, history in ((0, {CHECKPOINT_GFID: [(100, 9.0), (200, 7.0), (300, 6.5)]}),
                          (1, {tier_gfid_key(1): [(100, 8.0)], tier_gfid_key(2): [(300, 6.0)]})):
        run = tracker.open_run(f"a/SiT-T/{seed}", "diffusion", f"d-{seed}", parent_id=tok,
                               tags={"tokenizer_id": "a", "backbone": "SiT-T", "seed": seed})
        tracker.log_history(run, [(step, {key: value}) for key, points in history.items() for step, value in points])
        tracker.log_metrics(run, {"gen/cfg1/gfid": 5.0, sampler_gfid_key("heun", 20): 4.0 + seed})
        tracker.finish(run)

    table = study_table(tracker).set_index("seed")
    assert table["gen/sampler/gfid@heun20"].tolist() == [4.0, 5.0]  # the sampler check: a column per solver
    curve = [checkpoint_gfid_column(s) for s in (100, 200, 300)]
    assert table.loc[0, curve].tolist() == [9.0, 7.0, 6.5]
    assert table.loc[1, curve[0]] == 8.0 and np.isnan(table.loc[1, curve[1]]) and table.loc[1, curve[2]] == 6.0


def test_values_of_an_earlier_scoring_leave_the_table(tmp_path: Path) -> None:
    """A re-score after `cfg_scales`, `sampler_check` or `scorers` changed leaves the old keys on the run (MLflow keeps
    them); the table keeps only what the run's `eval.*` tags say its last scoring swept."""
    from raysweep.tracking.keys import EVALUATION_TAG_PREFIX, sampler_gfid_key

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    study = tracker.open_run("t", "study", "s")
    tok = tracker.open_run("a", "tokenizer", "key-a", parent_id=study, tags={"tokenizer_id": "a"})
    tracker.finish(tok)
    last = {"cfg_scales": "[1.0]", "sampler_check": "[{'method': 'heun', 'steps': 20}]",
            "scorers": "[{'name': 'domain-ae', 'weights_path': None, 'train_steps': 300}]"}
    run = tracker.open_run("a/SiT-T/0", "diffusion", "d", parent_id=tok,
                           tags={"tokenizer_id": "a", "backbone": "SiT-T", "seed": 0,
                                 **{f"{EVALUATION_TAG_PREFIX}{k}": v for k, v in last.items()}})
    tracker.log_metrics(run, {"gen/cfg1/gfid": 5.0, "gen/cfg2/gfid": 1.0, "gen/cfg1/gfid@domain-ae": 6.0,
                              "gen/cfg1/gfid@vgg16": 2.0, "gen/best/gfid@vgg16": 2.0,
                              sampler_gfid_key("heun", 20): 4.0, sampler_gfid_key("euler", 20): 3.0})
    tracker.finish(run)

    table = study_table(tracker)

    assert table["cfg_scale"].tolist() == [1.0]  # the dropped scale is no row
    assert table.loc[0, "gen/gfid@domain-ae"] == 6.0 and table.loc[0, "gen/gfid"] == 5.0
    assert not any("vgg16" in c for c in table.columns)  # a removed scorer is no target
    assert "gen/sampler/gfid@heun20" in table.columns and "gen/sampler/gfid@euler20" not in table.columns


def test_runs_of_inputs_the_study_no_longer_has_are_superseded_never_rows(tmp_path: Path) -> None:
    """After an edit of the study (e.g. more diffusion steps) the older runs stay in the experiment under their
    old keys: a run replaced by one of the same job under a planned key is SUPERSEDED (so are the diffusion runs
    of a replaced tokenizer), the analysis drops it and names each run once; a run with no replacement is kept."""
    from raysweep.analysis.tidy import split_excluded
    from raysweep.stages.analysis import superseded_runs
    from raysweep.tracking.table import SUPERSEDED_STATUS

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    study = tracker.open_run("t", "study", "s")

    def tokenizer(tid: str, key: str) -> str:
        run = tracker.open_run(tid, "tokenizer", key, parent_id=study, tags={"tokenizer_id": tid})
        tracker.finish(run)
        return run

    def diffusion(tok: str, tid: str, key: str, gfid: float) -> None:
        run = tracker.open_run(f"{tid}/SiT-T/0", "diffusion", key, parent_id=tok,
                               tags={"tokenizer_id": tid, "backbone": "SiT-T", "seed": 0})
        tracker.log_metrics(run, {"gen/cfg1/gfid": gfid, "gen/cfg1.5/gfid": gfid + 1, "gen/best/gfid": gfid})
        tracker.finish(run)

    a = tokenizer("a", "key-a")
    diffusion(a, "a", "d-old", 9.0)  # the same tokenizer x backbone x seed, twice
    diffusion(a, "a", "d-new", 5.0)
    diffusion(tokenizer("b", "key-b-old"), "b", "d-b", 7.0)  # b retrained since: its old run and diffusion run
    tokenizer("b", "key-b")
    tokenizer("c", "key-c")  # no run of a planned key: not judged (a removed variant, or keys of another formula)

    assert len(study_table(tracker)) == 8  # without the plan's keys: a's two runs at two scales, b's, b, c
    table = study_table(tracker, planned={"key-a", "d-new", "key-b"})
    old = table[table["status"] == SUPERSEDED_STATUS]
    assert sorted(old["tokenizer_id"]) == ["a", "a", "b", "b"] and old["reason"].str.contains("replaced").all()
    ok, _ = split_excluded(table)
    assert list(ok["gen/gfid"]) == [5.0, 6.0]  # only the current run's two CFG rows are measured rows
    assert set(table.loc[table["tokenizer_id"] == "c", "status"]) == {"NO_DIFFUSION"}

    table["conv/gfid@300"] = np.where(table["status"] == SUPERSEDED_STATUS, 7.0, np.nan)  # an old run's curve step
    current, sections = superseded_runs(table)
    assert SUPERSEDED_STATUS not in set(current["status"]) and len(current) == 4
    assert "conv/gfid@300" not in current.columns and "gen/gfid" in current.columns
    [section] = sections
    assert len(section.frame) == 2 and section.collapsed  # one line per run, not per CFG scale
    assert superseded_runs(current)[1] == []
