"""Correlations: agreement with scipy, the documented sign convention, bootstrap coverage, grouping, CFG selection."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from raysweep.analysis import best_cfg_rows, correlate, get_method, group_correlations, perspective_ranking
from raysweep.analysis.correlation_methods import resample_counts

DIRECTIONS = {"gen/gfid": False, "latent/velocity/viv": False, "latent/semantic/lnc@5": True}


def _planted(n: int, seed: int) -> pd.DataFrame:
    """gFID rises with VIV (lower-is-better) and falls with LNC (higher-is-better): both are good predictors."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n)
    return pd.DataFrame({
        "gen/gfid": 10.0 + 3.0 * u,
        "latent/velocity/viv": 1.0 + 0.4 * u + 0.05 * rng.normal(size=n),
        "latent/semantic/lnc@5": 0.5 - 0.1 * u + 0.01 * rng.normal(size=n),
        "backbone": np.where(np.arange(n) % 2 == 0, "sit-b", "ldit-b"),
    })


REFERENCES = (("pearson", stats.pearsonr), ("spearman", stats.spearmanr), ("kendall", stats.kendalltau))


def _pairs(rng: np.random.Generator, n: int, continuous: bool) -> tuple[np.ndarray, np.ndarray]:
    """Correlated pairs; discrete ones have many ties (as bootstrap resamples of any data do)."""
    if continuous:
        x = rng.normal(size=n)
        return x, x + rng.normal(size=n)
    x = rng.integers(0, 5, size=n).astype(float)
    return x, rng.integers(0, 4, size=n) + x // 2


@pytest.mark.parametrize("continuous", [True, False])
def test_point_estimates_match_scipy(continuous: bool) -> None:
    rng = np.random.default_rng(1)
    for _ in range(6):
        x, y = _pairs(rng, 25, continuous)
        for name, ref in REFERENCES:
            assert get_method(name).r(x, y) == pytest.approx(ref(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize("continuous", [True, False])
def test_bootstrap_equals_scipy_on_each_expanded_resample(continuous: bool) -> None:
    """The counts form of a resample gives the coefficient scipy computes on the resample itself."""
    rng = np.random.default_rng(5)
    n = 40
    x, y = _pairs(rng, n, continuous)
    idx = rng.integers(0, n, size=(30, n))
    counts = resample_counts(idx, n)
    for name, ref in REFERENCES:
        expected = [ref(x[i], y[i]).statistic for i in idx]
        np.testing.assert_allclose(get_method(name).weighted(x, y, counts), expected, rtol=0, atol=1e-12)


def test_kendall_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    x, y = _pairs(rng, 12, continuous=False)
    idx = rng.integers(0, 12, size=(9, 12))
    kendall, counts = get_method("kendall"), resample_counts(idx, 12)
    whole = kendall.weighted(x, y, counts)
    monkeypatch.setattr("raysweep.analysis.correlation_methods.KENDALL_CHUNK_ELEMENTS", 5 * 12)  # blocks of 5 columns
    np.testing.assert_array_equal(kendall.weighted(x, y, counts), whole)


def test_a_resample_of_one_repeated_value_gives_nan() -> None:
    x, y = np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 3.0, 2.0, 4.0])
    idx = np.array([[2, 2, 2, 2], [0, 1, 2, 3]])  # the first draws one pair four times
    for name, _ in REFERENCES:
        boot = get_method(name).weighted(x, y, resample_counts(idx, len(x)))
        assert np.isnan(boot[0]) and np.isfinite(boot[1])


def test_correlate_ci_is_the_percentile_interval_of_scipy_over_the_same_resamples() -> None:
    """Same seed, same resamples: the CI is what the plain bootstrap (scipy on every resample) gives."""
    table = _planted(35, seed=6)
    n_boot, seed = 200, 11
    corr = correlate(table, ["latent/velocity/viv"], DIRECTIONS, n_boot=n_boot, seed=seed).set_index("method")
    x, y = -table["latent/velocity/viv"].to_numpy(), table["gen/gfid"].to_numpy()
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    for method, ref in REFERENCES:
        boot = [ref(x[i], y[i]).statistic for i in idx]
        low, high = np.percentile(boot, [2.5, 97.5])
        assert corr.loc[method, "ci_low"] == pytest.approx(low, abs=1e-12)
        assert corr.loc[method, "ci_high"] == pytest.approx(high, abs=1e-12)


def test_correlate_point_estimates_and_p_values_match_scipy() -> None:
    table = _planted(30, seed=3)
    corr = correlate(table, ["latent/velocity/viv"], DIRECTIONS, n_boot=50).set_index("method")
    x, y = -table["latent/velocity/viv"].to_numpy(), table["gen/gfid"].to_numpy()
    for method, ref in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
        res = ref(x, y)
        assert corr.loc[method, "r"] == pytest.approx(res.statistic, abs=1e-12)
        assert corr.loc[method, "p_value"] == pytest.approx(res.pvalue, rel=1e-9)
        assert corr.loc[method, "ci_low"] <= corr.loc[method, "r"] <= corr.loc[method, "ci_high"]


def test_sign_convention_good_predictors_are_negative_against_gfid() -> None:
    table = _planted(40, seed=4)
    corr = correlate(table, ["latent/velocity/viv", "latent/semantic/lnc@5"], DIRECTIONS, methods=("pearson",),
                     n_boot=50)
    assert (corr["r"] < -0.9).all()  # lower VIV and higher LNC both mean a better latent and a lower gFID
    assert (corr["agreement"] == -corr["r"]).all()
    flipped = correlate(table, ["latent/velocity/viv"], {**DIRECTIONS, "latent/velocity/viv": True},
                        methods=("pearson",), n_boot=50)
    assert flipped["r"].iloc[0] == pytest.approx(-corr["r"].iloc[0])
    raw = stats.pearsonr(table["latent/velocity/viv"], table["gen/gfid"]).statistic
    assert corr["r"].iloc[0] == pytest.approx(-raw)  # the paper's "r of (-metric) vs gFID"


def test_bootstrap_ci_covers_true_pearson_correlation() -> None:
    rho, n, reps = 0.5, 40, 50
    covered = 0
    for rep in range(reps):
        rng = np.random.default_rng(1000 + rep)
        z1, z2 = rng.normal(size=n), rng.normal(size=n)
        table = pd.DataFrame({"m": z1, "gen/is": rho * z1 + np.sqrt(1 - rho**2) * z2})
        row = correlate(table, ["m"], {"m": True, "gen/is": True}, "gen/is", methods=("pearson",), n_boot=500,
                        seed=rep).iloc[0]
        covered += row["ci_low"] <= rho <= row["ci_high"]
    assert covered >= 0.9 * reps


def test_nan_rows_dropped_and_small_samples_give_nan() -> None:
    table = _planted(12, seed=5)
    table.loc[[0, 3], "latent/velocity/viv"] = np.nan
    table.loc[7, "gen/gfid"] = np.nan
    row = correlate(table, ["latent/velocity/viv"], DIRECTIONS, methods=("spearman",), n_boot=20).iloc[0]
    assert row["n"] == 9
    tiny = correlate(table.iloc[1:3], ["latent/velocity/viv"], DIRECTIONS, methods=("pearson",), n_boot=20).iloc[0]
    assert tiny["n"] == 2 and np.isnan(tiny["r"]) and np.isnan(tiny["ci_low"])


def test_correlate_is_seeded() -> None:
    table = _planted(20, seed=6)
    a = correlate(table, ["latent/velocity/viv"], DIRECTIONS, n_boot=100, seed=7)
    b = correlate(table, ["latent/velocity/viv"], DIRECTIONS, n_boot=100, seed=7)
    c = correlate(table, ["latent/velocity/viv"], DIRECTIONS, n_boot=100, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"], c["ci_low"])


def test_missing_direction_and_unknown_method_are_named() -> None:
    table = _planted(10, seed=0)
    with pytest.raises(ValueError, match="latent/semantic/lnc@5"):
        correlate(table, ["latent/semantic/lnc@5"], {"gen/gfid": False}, n_boot=10)
    with pytest.raises(ValueError, match="pearson"):
        get_method("distance")


def test_group_correlations_equal_per_group_correlate() -> None:
    table = _planted(30, seed=9)
    grouped = group_correlations(table, ["backbone"], ["latent/velocity/viv"], DIRECTIONS, n_boot=60, seed=1)
    assert sorted(grouped["backbone"].unique()) == ["ldit-b", "sit-b"]
    for name, part in grouped.groupby("backbone"):
        alone = correlate(table[table["backbone"] == name], ["latent/velocity/viv"], DIRECTIONS, n_boot=60, seed=1)
        pd.testing.assert_frame_equal(part.drop(columns="backbone").reset_index(drop=True), alone)


def test_best_cfg_rows_pick_the_minimum_of_each_cfg_curve() -> None:
    cfgs = [1.0, 1.5, 2.0, 3.0, 4.0]
    optimum = {("t0", "sit"): 1.5, ("t0", "ldit"): 3.0, ("t1", "sit"): 4.0, ("t1", "ldit"): 1.0}
    rows = [{"tokenizer_id": t, "backbone": b, "seed": 0, "cfg_scale": s, "gen/gfid": 5.0 + (s - best) ** 2}
            for (t, b), best in optimum.items() for s in cfgs]
    table = pd.DataFrame(rows)
    table.loc[(table["tokenizer_id"] == "t1") & (table["backbone"] == "ldit") & (table["cfg_scale"] == 1.0),
              "gen/gfid"] = np.nan  # a failed evaluation: the next-closest scale wins
    best = best_cfg_rows(table)
    got = {(r.tokenizer_id, r.backbone): r.cfg_scale for r in best.itertuples()}
    assert got == {**optimum, ("t1", "ldit"): 1.5}
    is_best = best_cfg_rows(table.assign(**{"gen/gfid": -table["gen/gfid"]}), higher_is_better=True)
    assert {(r.tokenizer_id, r.backbone): r.cfg_scale for r in is_best.itertuples()} == got


def test_perspective_ranking_picks_best_metric_per_perspective() -> None:
    corr = pd.DataFrame({
        "metric": ["latent/semantic/lnc@5", "latent/semantic/lnc@10", "latent/velocity/viv", "traj/efficiency",
                   "latent/velocity/viv"],
        "method": ["pearson", "pearson", "pearson", "pearson", "spearman"],
        "r": [-0.6, -0.7, -0.9, 0.2, -0.1],
        "agreement": [0.6, 0.7, 0.9, -0.2, 0.1],
    })
    corr["perspective"] = ["semantic", "semantic", "velocity", "traj", "velocity"]
    ranked = perspective_ranking(corr)
    assert list(ranked["perspective"]) == ["velocity", "semantic", "traj"]
    assert list(ranked["metric"]) == ["latent/velocity/viv", "latent/semantic/lnc@10", "traj/efficiency"]
    assert list(ranked["rank"]) == [1, 2, 3]
