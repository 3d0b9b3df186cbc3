"""Joint regressions: planted linear relations are recovered, LOO R² is exact, held-out groups show their offset."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from raysweep.analysis import leave_group_out, ols, pairwise_joint

A, B, C = 4.0, 2.5, -1.5  # gFID = A + B x + C z + noise


def _planted(n: int, noise: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, z, w = rng.normal(size=n), rng.normal(scale=2.0, size=n), rng.normal(size=n)
    return pd.DataFrame({"x": x, "z": z, "w": w, "gen/gfid": A + B * x + C * z + noise * rng.normal(size=n)})


def test_noise_free_relation_is_recovered_exactly() -> None:
    fit = ols(_planted(20, noise=0.0, seed=0), ["x", "z"])
    assert fit.intercept == pytest.approx(A)
    assert fit.coef == pytest.approx({"x": B, "z": C})
    assert fit.r2 == pytest.approx(1.0) and fit.loo_r2 == pytest.approx(1.0)
    assert fit.n == 20 and fit.predictors == ("x", "z")


def test_noisy_relation_matches_closed_form_expectations() -> None:
    n, sigma = 4000, 2.0
    fit = ols(_planted(n, noise=sigma, seed=1), ["x", "z"])
    # independent predictors: SE(b_j) = sigma / (sqrt(n) sd(x_j)); allow 5 standard errors
    assert abs(fit.coef["x"] - B) < 5 * sigma / np.sqrt(n)
    assert abs(fit.coef["z"] - C) < 5 * sigma / (np.sqrt(n) * 2.0)
    assert abs(fit.intercept - A) < 5 * sigma / np.sqrt(n)
    explained = B**2 * 1.0 + C**2 * 4.0
    assert fit.r2 == pytest.approx(explained / (explained + sigma**2), abs=0.02)
    assert fit.adj_r2 == pytest.approx(1 - (1 - fit.r2) * (n - 1) / (n - 3))


def test_coefficients_solve_the_normal_equations() -> None:
    table = _planted(50, noise=1.0, seed=2)
    fit = ols(table, ["x", "z", "w"])
    design = np.column_stack([np.ones(50), table[["x", "z", "w"]].to_numpy()])
    beta = np.linalg.solve(design.T @ design, design.T @ table["gen/gfid"].to_numpy())
    np.testing.assert_allclose([fit.intercept, *fit.coef.values()], beta, rtol=1e-10)
    resid = table["gen/gfid"].to_numpy() - design @ beta
    y = table["gen/gfid"].to_numpy()
    assert fit.r2 == pytest.approx(1 - resid @ resid / ((y - y.mean()) ** 2).sum())


def test_loo_r2_equals_brute_force_refits() -> None:
    table = _planted(25, noise=1.5, seed=3)
    predictors = ["x", "z", "w"]
    y = table["gen/gfid"].to_numpy()
    design = np.column_stack([np.ones(len(y)), table[predictors].to_numpy()])
    loo_pred = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        beta, *_ = np.linalg.lstsq(design[keep], y[keep], rcond=None)
        loo_pred[i] = design[i] @ beta
    brute = 1 - ((y - loo_pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert ols(table, predictors).loo_r2 == pytest.approx(brute, rel=1e-10)


def test_incomplete_rows_are_dropped_and_bad_inputs_named() -> None:
    table = _planted(15, noise=1.0, seed=4)
    table.loc[[2, 5], "x"] = np.nan
    assert ols(table, ["x"]).n == 13
    with pytest.raises(ValueError, match="predictor"):
        ols(table, [])
    with pytest.raises(ValueError, match="nope"):
        ols(table, ["nope"])


def test_pairwise_joint_fits_every_pair_best_first() -> None:
    table = _planted(40, noise=0.5, seed=5)
    candidates = ["x", "z", "w"]
    joint = pairwise_joint(table, candidates, "gen/gfid")
    assert {(r.x, r.y) for r in joint.itertuples()} == set(combinations(candidates, 2))
    assert joint["loo_r2"].is_monotonic_decreasing
    assert (joint.iloc[0]["x"], joint.iloc[0]["y"]) == ("x", "z")  # the planted pair
    for row in joint.itertuples():
        fit = ols(table, [row.x, row.y])
        assert (row.coef_x, row.coef_y, row.r2) == pytest.approx((fit.coef[row.x], fit.coef[row.y], fit.r2))


def test_leave_group_out_reports_a_held_out_offset() -> None:
    delta = 3.0
    table = _planted(40, noise=0.0, seed=6).assign(family=np.repeat(["a", "b", "c", "d"], 10))
    table.loc[table["family"] == "d", "gen/gfid"] += delta  # family d sits delta above the shared plane
    errors = leave_group_out(table, ["x", "z"], "gen/gfid", "family").set_index("family")
    held = errors.loc["d"]
    assert (held["n_train"], held["n_test"]) == (30, 10)
    assert held["bias"] == pytest.approx(-delta) and held["rmse"] == pytest.approx(delta)
    assert held["mae"] == pytest.approx(delta)
