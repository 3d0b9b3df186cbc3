"""The analysis end to end on real MLflow runs (sqlite in tmp_path, written with the Tracker; no Ray): the tidy table
read back, every artifact on the study run, `raysweep analyze` flags, exclusions and the mixed-card refusal."""
from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib import image as mpimg

from raysweep import analysis as ra
from raysweep.analysis.cards import RECONSTRUCTION
from raysweep.cli import main
from raysweep.config import ConfigError, load_study
from raysweep.stages.analysis import analysis_options, analyze_study
from raysweep.tracking import Tracker

BACKBONES = ("SiT-T", "LightningDiT-T")
CFGS = (1.0, 2.0)
FAMILIES = ("conv-f2d4", "conv-f2d4", "conv-f2d4", "vit-f2d4", "vit-f2d4", "vit-f2d4")
CARD = {"card.sampling_steps": "20", "card.num_samples": "400", "card.sampler": "euler-ode"}
SEGMENTS = 5
FAILED = ("tok-2", "LightningDiT-T")
PIXEL_VARIANCE_FLOOR = 1e-3


def _log_study(uri: str, experiment: str, families: tuple[str, ...] = FAMILIES,
               backbones: tuple[str, ...] = BACKBONES, odd_card: dict[str, str] | None = None) -> dict:
    """Tokenizers (one per family entry) x backbones x 2 CFG scales, gFID planted on a latent quality; the run
    FAILED is failed. `odd_card` replaces card fields of tok-0's runs (a second card). Returns what was logged."""
    rng = np.random.default_rng(0)
    tracker = Tracker(uri, experiment)
    study_id = tracker.open_run(experiment, "study", "study-hash")
    logged: dict = {}
    for t, family in enumerate(families):
        tok_id, quality = f"tok-{t}", float(t) / 2 + 0.3 * rng.normal()
        latent = {"latent/velocity/viv": 1.2 - 0.15 * quality + 0.02 * rng.normal(),
                  "latent/semantic/lnc@5": 0.4 + 0.08 * quality + 0.03 * rng.normal(),
                  "latent/spatial/srss": 0.1 + 0.03 * rng.normal() + 0.02 * quality,
                  "latent/smoothness/sec@0.5": 0.4 - 0.05 * quality + 0.02 * rng.normal(),
                  "recon/psnr": 25.0 + rng.normal()}
        tok_run = tracker.open_run(f"tokenizer/{tok_id}", "tokenizer", tok_id, study_id,
                                   tags={"tokenizer_id": tok_id, "family": family, "cluster": f"c{t % 2}",
                                         "variant": f"v{t}"})
        tracker.log_metrics(tok_run, latent)
        grid = np.linspace(0.0, 0.95, 8)
        tracker.log_json(tok_run, {"latent/velocity/viv_t": {"grid": grid.tolist(),
                                                             "values": (latent["latent/velocity/viv"] /
                                                                        (1.0 + grid)).tolist()}},
                         "curves/latent_curves.json")
        tracker.finish(tok_run)
        for backbone in backbones:
            card = {**CARD, **(odd_card or {})} if t == 0 else CARD
            run = tracker.open_run(f"diffusion/{backbone}/0", "diffusion", f"{tok_id}-{backbone}", tok_run,
                                   tags={"tokenizer_id": tok_id, "backbone": backbone, "seed": 0,
                                         "raysweep.eval_card_hash": "odd" if card != CARD else "base"},
                                   params=card)
            gen = {f"gen/cfg{s:g}/gfid": 30.0 - 4.0 * quality + 2.0 * (s - 1.5) ** 2 + rng.normal() for s in CFGS}
            gen.update({f"gen/cfg{s:g}/is": 3.0 + quality + 0.3 * rng.normal() for s in CFGS})
            gen.update({"traj/straightness": 0.8 + 0.03 * quality + 0.01 * rng.normal(),
                        "traj/efficiency": 0.9 + 0.02 * quality + 0.01 * rng.normal()})
            tracker.log_metrics(run, gen)
            ratios = 1.0 + 0.1 * np.cos(np.linspace(0, np.pi, SEGMENTS)) / (1.0 + quality)
            tracker.log_history(run, [(i, {"traj/length_ratio": float(r)}) for i, r in enumerate(ratios)])
            failed = (tok_id, backbone) == FAILED
            tracker.finish(run, "FAILED" if failed else "FINISHED", reason="RuntimeError: CUDA out of memory"
                           if failed else None)
            logged[(tok_id, backbone)] = {**latent, **gen, "family": family, "ratios": ratios}
    tracker.finish(study_id)
    return logged


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    root = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    logged = _log_study(uri, "demo")
    _log_study(uri, "mixed", families=FAMILIES[:4], backbones=BACKBONES[:1], odd_card={"card.sampling_steps": "250"})
    return root, uri, logged


def _study_yaml(root: Path, uri: str, experiment: str, planned: list[str], analysis: dict | None = None,
                name: str | None = None) -> Path:
    path = root / f"{name or experiment}.yaml"
    variants = [{"regularizer": "baseline", "id": tok, "kl_weight": 1e-6 * (i + 1)} for i, tok in enumerate(planned)]
    path.write_text(yaml.safe_dump({
        "name": experiment, "storage": {"root": str(root / experiment)}, "tracking": {"uri": uri},
        "tokenizers": {"architecture": "conv-tiny", "latent": "f2d4", "variants": variants},
        "diffusion": {"backbone": {"grid": list(BACKBONES)}}, "analysis": analysis or {},
    }))
    return path


def test_tidy_table_reads_back_every_row_and_card(store: tuple[Path, str, dict]) -> None:
    _, uri, logged = store
    table = ra.load_tracked_table(uri, "demo")
    assert len(table) == len(FAMILIES) * len(BACKBONES) * len(CFGS)
    assert {"card_hash", *CARD, "family", "cluster", "variant", "gen/is", "traj/efficiency"} <= set(table.columns)
    for _, row in table.iterrows():
        want = logged[(row["tokenizer_id"], row["backbone"])]
        for metric in ("gfid", "is"):
            assert row[f"gen/{metric}"] == pytest.approx(want[f"gen/cfg{row['cfg_scale']:g}/{metric}"])
        assert row["latent/semantic/lnc@5"] == pytest.approx(want["latent/semantic/lnc@5"])
        assert row["family"] == want["family"] and row["card_hash"] == "base"
    failed = table[table["status"] != "FINISHED"]
    assert set(zip(failed["tokenizer_id"], failed["backbone"])) == {FAILED}
    assert failed["reason"].str.contains("CUDA out of memory").all()
    with pytest.raises(ValueError, match="demo"):
        ra.load_tracked_table(uri, "no-such-study")


def test_analyze_command_logs_every_artifact(store: tuple[Path, str, dict],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root, uri, logged = store
    study = _study_yaml(root, uri, "demo", [f"tok-{t}" for t in range(len(FAMILIES))] + ["tok-planned"])
    assert main(["analyze", str(study), "--n-boot", "50", "--compare-paper"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"VIV\s+-0\.87\s+-?0\.\d\d", printed)  # ours measured beside the paper's
    assert "joint OLS" in printed and "0.91" in printed

    tracker = Tracker(uri, "demo")
    study_id = tracker.runs("study")[0].info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tracker.client.download_artifacts(study_id, "analysis", tmp))
        names = {p.name for p in (local / "figures").iterdir()}
        stems = {"lead_ranking", "lead_headline", "lead_parallel", "scatter_gen_gfid", "scatter_gen_is",
                 "correlations_gen_gfid", "correlations_gen_is",
                 "metric_heatmap", "bubble_1", "bubble_2", "bubble_3", "trajectory_vs_gfid", "length_ratio_viv"}
        assert names == {f"{s}.png" for s in stems}  # SVG only when analysis.svg asks
        for png in (local / "figures").glob("*.png"):
            assert mpimg.imread(png).var() > PIXEL_VARIANCE_FLOOR, png.name
        page = (local / "report.html").read_text()
        table = pd.read_parquet(local / "table.parquet")
        csv = pd.read_csv(local / "table.csv")
        corr = pd.read_csv(local / "correlations.csv")
        general = pd.read_csv(local / "generalisation.csv")
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    assert all(s.startswith("data:") for s in re.findall(r'(?:src|href)="([^"]*)"', page))
    for text in ("CUDA out of memory", "tok-planned", "MISSING", "Comparison with the paper", "Evaluation cards"):
        assert text in page, text
    assert len(table) == len(csv) == len(logged) * len(CFGS) + 1  # + one MISSING row for tok-planned
    assert {"card_hash", "card.sampling_steps"} <= set(table.columns)
    assert set(corr["target"]) == {"gen/gfid", "gen/is"}
    assert {"best_cfg", "backbone", "family", "cluster", "cfg_scale"} == set(corr["scope"])  # cluster: regularizer
    assert set(corr.loc[corr["scope"] == "family", "group"]) == set(FAMILIES)
    assert set(general["held_out"]) == {"family", "backbone"}
    # 5 finished runs on LightningDiT-T: the failed one is not analysed, at any CFG scale
    per_backbone = corr[(corr["scope"] == "backbone") & (corr["target"] == "gen/gfid")].groupby("group")["n"]
    assert per_backbone.unique().map(list).to_dict() == {"LightningDiT-T": [len(FAMILIES) - 1],
                                                         "SiT-T": [len(FAMILIES)]}


def test_best_cfg_correlation_matches_an_independent_computation(store: tuple[Path, str, dict]) -> None:
    _, uri, logged = store
    ok, _ = ra.split_excluded(ra.load_tracked_table(uri, "demo"))
    corr = ra.scoped_correlations(ok, ra.best_cfg_rows(ok), ["latent/velocity/viv"],
                                  {"latent/velocity/viv": False, "gen/gfid": False}, ["gen/gfid"],
                                  ra.AnalysisOptions(n_boot=20, methods=("pearson",)))
    finished = {k: v for k, v in logged.items() if k != FAILED}
    best_gfid = [min(v[f"gen/cfg{s:g}/gfid"] for s in CFGS) for v in finished.values()]
    expected = np.corrcoef([-v["latent/velocity/viv"] for v in finished.values()], best_gfid)[0, 1]
    overall = corr[corr["scope"] == "best_cfg"].iloc[0]
    assert overall["r"] == pytest.approx(expected, rel=1e-10) and overall["n"] == len(finished)


def test_mixed_cards_are_refused_with_the_differing_fields(store: tuple[Path, str, dict],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    root, uri, _ = store
    study = _study_yaml(root, uri, "mixed", [f"tok-{t}" for t in range(4)])
    assert main(["analyze", str(study), "--n-boot", "20"]) == 2
    err = capsys.readouterr().err
    assert "card.sampling_steps: 20 | 250" in err and "--allow-mixed-cards" in err
    assert "card.num_samples" not in err  # only the fields that differ are named
    table = ra.load_tracked_table(uri, "mixed")
    options = ra.AnalysisOptions(n_boot=20, methods=("pearson",), joint_models=1, svg=False)
    with pytest.raises(ra.MixedCardsError, match="card.sampling_steps"):
        ra.analyze(table, root / "refused", {}, options)
    allowed = ra.analyze(table, root / "allowed", {}, replace(options, allow_mixed_cards=True))
    generation = allowed.cards[allowed.cards["scores"] == "generation"]
    assert sorted(generation["card_hash"]) == ["base", "odd"]
    assert "2 evaluation cards" in allowed.report.read_text()


def test_analysis_section_sets_the_options_and_cli_flags_override_it(store: tuple[Path, str, dict],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root, uri, _ = store
    fast = {"n_boot": 20, "methods": ["pearson"], "joint_models": 1, "svg": True}  # svg: not the default
    allowing = _study_yaml(root, uri, "mixed", [f"tok-{t}" for t in range(4)], {**fast, "allow_mixed_cards": True},
                           name="mixed-allowed")
    study = load_study(allowing)
    assert analysis_options(study) == ra.AnalysisOptions(n_boot=20, methods=("pearson",), allow_mixed_cards=True,
                                                         joint_models=1, svg=True, seed=study.seed)
    assert analysis_options(study, n_boot=50, allow_mixed_cards=None).n_boot == 50  # a flag wins, None is unset
    assert main(["analyze", str(allowing)]) == 0  # the YAML allows the two cards
    assert "runs analysed" in capsys.readouterr().out
    assert main(["analyze", str(allowing), "--no-allow-mixed-cards"]) == 2  # the flag overrides the YAML
    assert "card.sampling_steps: 20 | 250" in capsys.readouterr().err
    refusing = _study_yaml(root, uri, "mixed", [f"tok-{t}" for t in range(4)], fast, name="mixed-refused")
    assert main(["analyze", str(refusing), "--allow-mixed-cards"]) == 0


def test_stage_4_refuses_mixed_cards_with_one_line_naming_the_key_and_keeps_the_runs(
        store: tuple[Path, str, dict]) -> None:
    """What `raysweep run` does at stage 4 (`analyze_study`): a ConfigError, which the CLI prints as one line with
    exit code 2 (the study run is marked FAILED with that reason); every tracked run stays as it was."""
    root, uri, _ = store
    study = load_study(_study_yaml(root, uri, "mixed", [f"tok-{t}" for t in range(4)], {"n_boot": 20},
                                   name="mixed-stage4"))
    tracker = Tracker(uri, "mixed")
    before = {r.info.run_id: r.info.status for r in tracker.runs("diffusion")}
    with pytest.raises(ConfigError) as info:
        analyze_study(study, tracker, tracker.runs("study")[0].info.run_id)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"{study.source}: analysis.allow_mixed_cards: ")
    assert "card.sampling_steps: 20 | 250" in line and "--allow-mixed-cards" in line
    assert "analysis.allow_mixed_cards: true" in line
    assert {r.info.run_id: r.info.status for r in tracker.runs("diffusion")} == before and len(before) == 4

def test_check_cards_names_missing_cards_and_passes_a_single_card() -> None:
    table = pd.DataFrame({"card_hash": ["a", "a", None], "card.steps": ["50", "50", None],
                          "card.cfg": ["1.5", "1.5", None], "diffusion_run_id": ["r1", "r1", "r2"]})
    with pytest.raises(ra.MixedCardsError, match=r"card\.steps: \(missing\) \| 50") as info:
        ra.check_cards(table)
    assert "(none) (1 rows)" in str(info.value)
    summary = ra.check_cards(table.iloc[:2])
    assert list(summary["card_hash"]) == ["a"] and summary["runs"].tolist() == [1]
    allowed = ra.check_cards(table, allow_mixed=True)
    assert allowed.set_index("card_hash").loc["(none)", "card.steps"] == "(missing)"


def test_reconstruction_cards_are_checked_on_their_own_columns() -> None:
    table = pd.DataFrame({"recon_card_hash": ["r1", "r2"], "recon_card.reference_split": ["val", "train"],
                          "card_hash": ["g", "g"], "tokenizer_run_id": ["t1", "t2"]})
    assert ra.check_cards(table)["card_hash"].tolist() == ["g"]  # generation: one card
    with pytest.raises(ra.MixedCardsError, match=r"reconstruction .*recon_card\.reference_split: train \| val"):
        ra.check_cards(table, kind=RECONSTRUCTION)


def test_cards_differing_only_in_the_seed_are_one_protocol() -> None:
    table = pd.DataFrame({"card_hash": ["h0", "h1"], "card.seed": ["0", "1"], "card.steps": ["50", "50"]})
    assert len(ra.check_cards(table)) == 2  # listed, not refused
    with pytest.raises(ra.MixedCardsError, match="none of the recorded"):
        ra.check_cards(table[["card_hash"]])  # different hashes and no fields to tell why
