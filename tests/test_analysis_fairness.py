"""Fair statistics: the bootstrap resamples tokenizers, the ranking is by |r| and says when a metric is reversed,
partial correlations given reconstruction quality equal the residual computation, the matched subset is the IQR."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from raysweep.analysis import correlate, perspective_ranking
from raysweep.analysis.partial import partial_correlate, reconstruction_matched

DIRECTIONS = {"gen/gfid": False, "latent/velocity/viv": False, "latent/spatial/lds": True,
              "latent/spatial/srss": True, "recon/psnr": True, "recon/rfid": False}


def _seeded(tokenizers: int, seeds: int, rng: np.random.Generator) -> pd.DataFrame:
    """`seeds` rows per tokenizer: one VIV each, gFID = tokenizer effect + seed noise."""
    viv = rng.normal(size=tokenizers)
    effect = 2.0 * viv + rng.normal(size=tokenizers)
    rows = [{"tokenizer_id": f"t{i}", "seed": s, "latent/velocity/viv": viv[i],
             "gen/gfid": 10.0 + effect[i] + 0.3 * rng.normal()} for i in range(tokenizers) for s in range(seeds)]
    return pd.DataFrame(rows)


def test_tokenizer_bootstrap_is_the_hand_computed_resample_of_whole_tokenizers() -> None:
    """Each resample draws k tokenizers with replacement (in sorted-id order, the same generator draws) and takes all
    their seeds; scipy on each expanded resample, then the percentile interval."""
    table = _seeded(tokenizers=5, seeds=2, rng=np.random.default_rng(1))
    n_boot, seed = 300, 7
    corr = correlate(table, ["latent/velocity/viv"], DIRECTIONS, methods=("pearson",), n_boot=n_boot, seed=seed,
                     cluster="tokenizer_id").iloc[0]
    ids = sorted(table["tokenizer_id"].unique())
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    boot = []
    for draw in draws:
        rows = pd.concat([table[table["tokenizer_id"] == ids[j]] for j in draw])
        boot.append(stats.pearsonr(-rows["latent/velocity/viv"], rows["gen/gfid"]).statistic
                    if rows["latent/velocity/viv"].nunique() > 1 else np.nan)
    low, high = np.nanpercentile(boot, [2.5, 97.5])
    assert corr["ci_low"] == pytest.approx(low, abs=1e-12) and corr["ci_high"] == pytest.approx(high, abs=1e-12)
    # and it is not the row bootstrap: two identical seeds of a tokenizer are one observation, not two
    rows = correlate(table, ["latent/velocity/viv"], DIRECTIONS, methods=("pearson",), n_boot=n_boot, seed=seed).iloc[0]
    assert (rows["ci_low"], rows["ci_high"]) != (corr["ci_low"], corr["ci_high"])


def test_duplicated_seeds_give_the_interval_of_one_row_per_tokenizer() -> None:
    """Hand computation: if both seeds of every tokenizer are equal, a tokenizer-level resample is the one-row
    table's resample with every weight doubled, and Pearson ignores a common weight, so the CIs are identical."""
    one = _seeded(tokenizers=6, seeds=1, rng=np.random.default_rng(3))
    two = pd.concat([one, one.assign(seed=1)], ignore_index=True)
    kwargs = {"methods": ("pearson", "spearman"), "n_boot": 200, "seed": 5}
    single = correlate(one, ["latent/velocity/viv"], DIRECTIONS, **kwargs)
    paired = correlate(two, ["latent/velocity/viv"], DIRECTIONS, cluster="tokenizer_id", **kwargs)
    assert np.allclose(paired[["r", "ci_low", "ci_high"]].to_numpy(float), single[["r", "ci_low", "ci_high"]].to_numpy(
        float), atol=1e-12)
    naive = correlate(two, ["latent/velocity/viv"], DIRECTIONS, **kwargs)  # rows as if independent: too narrow
    assert (naive["ci_high"] - naive["ci_low"]).iloc[0] < (paired["ci_high"] - paired["ci_low"]).iloc[0]


def test_ranking_is_by_abs_r_and_names_a_reversed_metric() -> None:
    """VIV goes the opposite way to the paper (r > 0 against gFID) and is the strongest: it leads, marked; within
    spatial the reversed LDS (|r| 0.64) is shown, not the weaker SRSS that agrees."""
    corr = pd.DataFrame({
        "metric": ["latent/velocity/viv", "latent/spatial/lds", "latent/spatial/srss", "latent/semantic/lnc@5"],
        "perspective": ["velocity", "spatial", "spatial", "semantic"],
        "method": "pearson", "r": [0.87, 0.64, -0.30, -0.175],
    })
    corr["agreement"] = -corr["r"]  # against gFID, lower is better
    ranked = perspective_ranking(corr)
    assert list(ranked["metric"]) == ["latent/velocity/viv", "latent/spatial/lds", "latent/semantic/lnc@5"]
    assert list(ranked["vs_paper"]) == ["OPPOSITE to the paper", "OPPOSITE to the paper", "as the paper"]
    assert set(ranked["paper_sign"]) == {"r < 0"}
    against_is = corr.assign(r=-corr["r"])  # IS: higher is better, so agreement = r and the paper's sign is r > 0
    assert set(perspective_ranking(against_is)["paper_sign"]) == {"r > 0"}


def _reconstruction_table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    psnr = rng.normal(25, 2, size=n)
    rfid = 3.0 - 0.1 * psnr + 0.2 * rng.normal(size=n)
    viv = 0.5 * psnr + rng.normal(size=n)
    gfid = 20.0 - 0.8 * psnr + 2.0 * rfid - 0.5 * viv + rng.normal(size=n)
    return pd.DataFrame({"tokenizer_id": [f"t{i // 2}" for i in range(n)], "recon/psnr": psnr, "recon/rfid": rfid,
                         "latent/velocity/viv": viv, "gen/gfid": gfid})


def _residual_r(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    design = np.column_stack([np.ones(len(x)), z])
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return float(stats.pearsonr(rx, ry).statistic)


def test_partial_pearson_is_the_correlation_of_residuals_and_its_bootstrap_is_per_tokenizer() -> None:
    table = _reconstruction_table(40, np.random.default_rng(0))
    n_boot, seed = 100, 3
    row = partial_correlate(table, ["latent/velocity/viv", "recon/psnr"], DIRECTIONS, n_boot=n_boot, seed=seed,
                            cluster="tokenizer_id")
    assert list(row["metric"]) == ["latent/velocity/viv"] and row["method"].iloc[0] == "partial_pearson"
    row = row.iloc[0]
    x, y = -table["latent/velocity/viv"].to_numpy(), table["gen/gfid"].to_numpy()
    z = table[["recon/psnr", "recon/rfid"]].to_numpy()
    r = _residual_r(x, y, z)
    assert row["r"] == pytest.approx(r, abs=1e-10) and row["agreement"] == pytest.approx(-r, abs=1e-10)
    t = r * np.sqrt((40 - 4) / (1 - r * r))
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), 40 - 4), rel=1e-9)
    ids = sorted(table["tokenizer_id"].unique())
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    groups = table["tokenizer_id"].to_numpy()
    boot = []
    for draw in draws:
        idx = np.concatenate([np.flatnonzero(groups == ids[j]) for j in draw])
        boot.append(_residual_r(x[idx], y[idx], z[idx]))
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(list(np.percentile(boot, [2.5, 97.5])), abs=1e-9)


def test_reconstruction_matched_keeps_the_psnr_interquartile_tokenizers() -> None:
    table = pd.DataFrame({"tokenizer_id": list("abcdefgh") * 2, "recon/psnr": list(range(20, 28)) * 2})
    matched, label = reconstruction_matched(table)
    assert sorted(matched["tokenizer_id"].unique()) == list("cdef")  # IQR of 20..27 is [21.75, 25.25]
    assert label == "recon/psnr in [21.75, 25.25]"
    assert reconstruction_matched(table.drop(columns="recon/psnr"))[0].empty
