"""The validity sections and the report's interface: convergence flag on synthetic curves, floor table, headline."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysweep.analysis import AnalysisOptions, analyze
from raysweep.analysis.convergence import CONVERGED, UNDER_TRAINED, UNKNOWN, convergence_flags
from raysweep.analysis.validity import SECTION_TITLES, floor_section, rank_agreement, validity_sections
from raysweep.tracking.keys import checkpoint_gfid_column as curve_column

STEPS = (100, 200, 300, 400)


def _curves(kind: str, seeds: int, rng: np.random.Generator) -> list[dict[str, float]]:
    """Cheap gFID per checkpoint: `improving` falls 20 % over the last interval, `flat` by < 1 %, seed noise 0.05."""
    last = {"improving": [20.0, 14.0, 11.0, 8.8], "flat": [20.0, 12.0, 10.05, 10.0]}[kind]
    return [{curve_column(s): v + 0.05 * rng.normal() for s, v in zip(STEPS, last)} for _ in range(seeds)]


def _run_table(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for tok, kind, seeds in (("a", "improving", 3), ("b", "flat", 3), ("c", "improving", 1)):
        rows += [{"tokenizer_id": tok, "backbone": "SiT", "seed": s, **c}
                 for s, c in enumerate(_curves(kind, seeds, rng))]
    rows.append({"tokenizer_id": "d", "backbone": "SiT", "seed": 0, curve_column(100): 9.0, curve_column(200): 8.0})
    rows.append({"tokenizer_id": "d", "backbone": "SiT", "seed": 1, **_curves("flat", 1, rng)[0]})
    return pd.DataFrame(rows)


def test_convergence_flag_on_synthetic_curves() -> None:
    flags = convergence_flags(_run_table(np.random.default_rng(0))).set_index("tokenizer_id")
    assert flags["status"].to_dict() == {"a": UNDER_TRAINED, "b": CONVERGED, "c": UNKNOWN, "d": UNKNOWN}
    assert flags.loc["a", "improvement"] == pytest.approx(2.2 / 11.0, abs=0.02)  # (11 - 8.8) / 11
    assert flags.loc["b", "improvement"] == pytest.approx(0.05 / 10.05, abs=0.02)
    assert flags.loc["d", "checkpoints"] == 2  # fewer than 3 on one seed: unknown, whatever the others show


def test_a_big_drop_within_seed_noise_is_not_under_trained() -> None:
    """6 % mean improvement but seeds disagree wildly (SE > half the gain): not flagged."""
    gains = [0.3, -0.4, 2.0]
    rows = [{"tokenizer_id": "a", "backbone": "SiT", "seed": i, curve_column(1): 12.0, curve_column(2): 10.0,
             curve_column(3): 10.0 - g} for i, g in enumerate(gains)]
    flags = convergence_flags(pd.DataFrame(rows))
    assert flags["improvement"].iloc[0] > 0.05 and flags["status"].iloc[0] == CONVERGED


def test_a_curve_that_paused_for_one_interval_passes_the_rule_and_reports_its_trend() -> None:
    """Two seeds falling 0.5 per interval, flat over the last one: the one-interval rule says converged; the
    least-squares trend over the last 3 intervals is the closed form (slope of 10.5, 10, 9.5, 9.5 is -0.35)."""
    rows = [{"tokenizer_id": "a", "backbone": "SiT", "seed": i, **{curve_column(k): v + i for k, v in
             enumerate((11.0, 10.5, 10.0, 9.5, 9.5), start=1)}} for i in range(2)]
    flag = convergence_flags(pd.DataFrame(rows)).iloc[0]
    assert flag["status"] == CONVERGED and flag["improvement"] == 0.0
    level = np.mean([10.5, 10.0, 9.5, 9.5]) + 0.5  # seed 1 is seed 0 plus 1
    assert flag["trend"] == pytest.approx(0.35 / level) and flag["trend_se"] == pytest.approx(0.0, abs=1e-12)
    short = convergence_flags(pd.DataFrame([{**r, curve_column(1): np.nan, curve_column(2): np.nan} for r in rows]))
    assert short["status"].iloc[0] == CONVERGED and np.isnan(short["trend"].iloc[0])  # 3 checkpoints: no trend


def test_rank_agreement_of_a_reversed_and_an_identical_score() -> None:
    best = pd.DataFrame({"tokenizer_id": list("abcde") * 2, "gen/gfid": [1, 2, 3, 4, 5] * 2})
    best["gen/kid"] = -best["gen/gfid"]
    best["gen/fdinf"] = best["gen/gfid"] - 0.5
    reversed_, same = rank_agreement(best, "gen/gfid", "gen/kid"), rank_agreement(best, "gen/gfid", "gen/fdinf")
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["top3_overlap"] == "1/3"  # c is third both ways
    assert same["spearman"] == pytest.approx(1.0) and same["kendall"] == pytest.approx(1.0)


def test_floor_section_from_fdr_and_missing_data_says_so_in_one_line() -> None:
    best = pd.DataFrame({"tokenizer_id": ["sharp", "sharp", "blurred", "blurred"], "gen/gfid": [4.0, 6.0, 9.0, 11.0],
                         "gen/fdr": [100.0, 150.0, 225.0, 275.0], "recon/rfid": [0.1, 0.1, 2.0, 2.0],
                         "card.fd_networks": "domain:abc", "card.feature_network": "domain"})
    frame = floor_section(best).frame.set_index("tokenizer_id")
    assert frame["gen/fd_floor"].tolist() == pytest.approx([0.04, 0.04])  # gFID / FDr
    assert frame.loc["blurred", "gfid_minus_floor"] == pytest.approx(10.0 - 0.04)
    second = floor_section(best.assign(**{"gen/gfid@dino": [1.0, 1.0, 3.0, 3.0], "gen/fd_floor@dino": 0.5})).frame
    dino = second[second["scorer"] == "dino"].set_index("tokenizer_id")
    assert dino["gen/gfid"].to_dict() == {"sharp": 1.0, "blurred": 3.0} and dino["recon/rfid"].isna().all()
    assert dino.loc["blurred", "gfid_minus_floor"] == pytest.approx(2.5)
    sections, warnings = validity_sections(best.drop(columns=["gen/fdr"]))
    assert [s.title for s in sections] == list(SECTION_TITLES) and warnings == []
    for section in sections:
        assert section.frame.empty and section.note.startswith("Not ") and "\n" not in section.note


def _study_table(rng: np.random.Generator) -> pd.DataFrame:
    """12 tokenizers x 2 seeds; LDS goes the opposite way to the paper and is the strongest, LNC agrees weakly."""
    rows = []
    for t in range(12):
        u = rng.normal()
        lds, lnc, psnr = u + 0.2 * rng.normal(), -0.3 * u + rng.normal(), 25 + rng.normal()
        for seed in range(2):
            rows.append({"tokenizer_id": f"t{t}", "family": "conv", "cluster": f"c{t % 3}", "backbone": "SiT",
                         "seed": seed, "cfg_scale": 1.0, "status": "FINISHED", "recon/psnr": psnr,
                         "recon/rfid": 0.5 + 0.1 * rng.normal(), "latent/spatial/lds": lds,
                         "latent/semantic/lnc@5": lnc, "gen/gfid": 10 + 2 * u + 0.3 * rng.normal()})
    return pd.DataFrame(rows)


def test_report_interface_headline_sections_and_csv_columns(tmp_path: Path) -> None:
    directions = {"latent/spatial/lds": True, "latent/semantic/lnc@5": True}  # higher LDS "better": reversed
    result = analyze(_study_table(np.random.default_rng(2)), tmp_path, directions, AnalysisOptions(n_boot=50))
    corr = pd.read_csv(tmp_path / "correlations.csv")
    assert list(corr.columns[:6]) == ["target", "scope", "group", "metric", "perspective", "method"]
    assert {"r", "ci_low", "ci_high", "n"} <= set(corr.columns)
    assert {"partial_pearson", "pearson"} <= set(corr["method"]) and "cluster" in set(corr["scope"])
    headline = corr[(corr["target"] == "gen/gfid") & (corr["method"] == "pearson") & (corr["group"] == "all")
                    & (corr["scope"] == corr["scope"].iloc[0])]
    top = headline.loc[headline["r"].abs().idxmax()]
    md = (tmp_path / "report.md").read_text()
    line = re.search(r"^- \*\*strongest perspective\*\*: (\w+) \(([^,]+), r = ([-0-9.]+)\)$", md, re.M)
    assert line and line.group(2) == top["metric"] == "latent/spatial/lds" and line.group(1) == "spatial"
    assert float(line.group(3)) == pytest.approx(top["r"], abs=1e-3) and top["r"] > 0  # reversed, not hidden
    assert "OPPOSITE to the paper" in md and "tokenizer-level" in md
    assert md.count("Sign convention") == 1
    for title in SECTION_TITLES:
        assert f"## {title}\n" in md
    assert result.ranking.iloc[0]["metric"] == "latent/spatial/lds"
