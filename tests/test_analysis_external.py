"""`analyze --table`: an external results table gives the study analysis's own answer, and bad columns one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysweep import analysis as ra
from raysweep.analysis.external import TableColumns, analyze_table
from raysweep.cli import main

N_TOK = 8
OPTIONS = ra.AnalysisOptions(n_boot=50, joint_models=1)


def _numbers() -> pd.DataFrame:
    """Per tokenizer x seed: a planted VIV-like (lower better) and a second metric, and the run's gFID."""
    rng = np.random.default_rng(1)
    viv, smooth = rng.standard_normal(N_TOK), rng.standard_normal(N_TOK)
    rows = [{"vae": f"v{t}", "family": "conv" if t % 2 else "vit", "seed": s, "viv": viv[t], "smooth": smooth[t],
             "fid": 5.0 + viv[t] - 0.3 * smooth[t] + 0.2 * rng.standard_normal()} for t in range(N_TOK) for s in (0, 1)]
    return pd.DataFrame(rows)


def _study_table(numbers: pd.DataFrame) -> pd.DataFrame:
    """The same numbers as a study's tidy table: two CFG scales per run, the listed gFID the better one."""
    rows = []
    for r in numbers.itertuples(index=False):
        for cfg, extra in ((1.0, 0.0), (1.5, 0.7)):
            rows.append({"tokenizer_id": r.vae, "family": r.family, "backbone": "external", "seed": r.seed,
                         "cfg_scale": cfg, "status": "FINISHED", "gen/gfid": r.fid + extra,
                         "latent/viv/viv": r.viv, "latent/smooth/smooth": r.smooth})
    return pd.DataFrame(rows)


def test_table_analysis_equals_the_study_analysis_on_the_same_numbers(tmp_path: Path) -> None:
    numbers = _numbers()
    numbers.drop(columns="seed").to_parquet(tmp_path / "t.parquet")
    columns = TableColumns(id="vae", target="fid", lower_is_better=("viv",), group="family")
    ours, as_json = analyze_table(tmp_path / "t.parquet", columns, tmp_path / "ours", OPTIONS)
    theirs = ra.analyze(_study_table(numbers), tmp_path / "study",
                        {"latent/viv/viv": False, "latent/smooth/smooth": True}, OPTIONS)
    per_cfg = theirs.correlations["scope"] == "cfg_scale"  # the study's CFG scales; a table row has one
    pd.testing.assert_frame_equal(ours.correlations, theirs.correlations[~per_cfg].reset_index(drop=True))
    for frame in ("ranking", "joint", "best"):
        pd.testing.assert_frame_equal(getattr(ours, frame).reset_index(drop=True)[getattr(theirs, frame).columns.drop(
            "cfg_scale", errors="ignore")], getattr(theirs, frame).reset_index(drop=True).drop(
            columns="cfg_scale", errors="ignore"), check_dtype=False)
    assert ours.report.is_file() and (tmp_path / "ours" / "joint_ols.csv").is_file()
    assert "Missing values" in ours.report.read_text()
    # JSON: r of the sign-normalised metric, r_raw of the column as given (VIV is lower-is-better)
    pearson = {c["metric"]: c for c in as_json["correlations"] if c["method"] == "pearson"}
    r_raw = np.corrcoef(numbers["viv"], numbers["fid"])[0, 1]
    assert as_json["n"] == N_TOK and pearson["viv"]["n"] == 2 * N_TOK
    assert pearson["viv"]["r_raw"] == pytest.approx(r_raw) and pearson["viv"]["r"] == pytest.approx(-r_raw)
    assert pearson["smooth"]["r"] == pytest.approx(np.corrcoef(numbers["smooth"], numbers["fid"])[0, 1])


def test_missing_values_are_pair_exclusions_counted_in_the_report(tmp_path: Path, capsys) -> None:
    numbers = _numbers().drop(columns="seed")
    numbers.loc[[0, 5], "smooth"] = np.nan
    numbers = numbers.astype({"viv": object})
    numbers.loc[3, "viv"] = "n/a"  # a non-numeric cell is a missing value
    numbers.to_csv(tmp_path / "t.csv", index=False)
    assert main(["analyze", "--table", str(tmp_path / "t.csv"), "--id", "vae", "--target", "fid",
                 "--metrics", "viv,smooth", "--lower-is-better", "viv", "--json", "--n-boot", "20"]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout holds only the JSON object
    n = {(c["metric"], c["method"]): c["n"] for c in out["correlations"]}
    assert n[("smooth", "spearman")] == 2 * N_TOK - 2 and n[("viv", "kendall")] == 2 * N_TOK - 1
    assert {c["method"] for c in out["correlations"]} == {"pearson", "spearman", "kendall"}


def test_a_bad_column_is_one_error_line_naming_file_column_and_allowed(tmp_path: Path, capsys) -> None:
    _numbers().to_csv(tmp_path / "t.csv", index=False)
    code = main(["analyze", "--table", str(tmp_path / "t.csv"), "--id", "vae", "--target", "fid",
                 "--metrics", "viv,vvi"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: ") and str(tmp_path / "t.csv") in err[0] and "'vvi'" in err[0]
    assert "allowed: family, fid, seed, smooth, vae, viv" in err[0]
