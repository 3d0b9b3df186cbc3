"""The proxy: its 90% intervals cover ≈ 90% of held-out gFIDs, and with much data it is the OLS fit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysweep.analysis.regression import ols
from raysweep.search.proxy import fit_proxy, loo_predictions


def _study(rng: np.random.Generator, n: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, 2))
    return x, 6.0 + 1.5 * (r * x[:, 0] + np.sqrt(1 - r * r) * rng.standard_normal(n))


@pytest.mark.parametrize("r", [0.87, 0.5])
def test_interval_coverage_is_calibrated(r: float) -> None:
    """Independent replicates: fit on 30 measured tokenizers of an 86-tokenizer study, one held-out tokenizer each;
    coverage within 3 binomial standard errors of 0.9."""
    rng = np.random.default_rng(7)
    reps, hits = 600, 0
    for _ in range(reps):
        x, y = _study(rng, 86, r)
        lo, hi = fit_proxy(x[:30], y[:30], x).predict(x[30:31]).interval(0.9)
        hits += int(lo[0] <= y[30] <= hi[0])
    assert abs(hits / reps - 0.9) <= 3 * np.sqrt(0.9 * 0.1 / reps)


def test_many_rows_give_the_ols_fit() -> None:
    rng = np.random.default_rng(1)
    x, y = _study(rng, 2000, 0.87)
    fit = ols(pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "gen/gfid": y}), ["a", "b"])
    probe = np.array([[1.0, -2.0], [0.0, 0.0]])
    expected = fit.intercept + probe @ np.array([fit.coef["a"], fit.coef["b"]])
    pred = fit_proxy(x, y).predict(probe)
    np.testing.assert_allclose(pred.mean, expected, atol=0.01)
    resid_sd = np.sqrt(((y - fit.intercept - x @ np.array([fit.coef["a"], fit.coef["b"]])) ** 2).mean())
    np.testing.assert_allclose(pred.scale, resid_sd, rtol=0.02)


def test_intervals_shrink_as_results_arrive_and_loo_holds_each_row_out() -> None:
    rng = np.random.default_rng(2)
    x, y = _study(rng, 86, 0.87)
    widths = [np.diff(fit_proxy(x[:n], y[:n], x).predict(x).interval(0.9), axis=0).mean() for n in (3, 10, 40)]
    assert widths[0] > widths[1] > widths[2]
    loo = loo_predictions(x[:10], y[:10], x)
    direct = fit_proxy(x[1:10], y[1:10], x).predict(x[:1])
    assert loo.mean[0] == pytest.approx(direct.mean[0]) and loo.scale[0] == pytest.approx(direct.scale[0])


def test_incomplete_rows_are_refused() -> None:
    x = np.ones((3, 1))
    with pytest.raises(ValueError, match="finite"):
        fit_proxy(x, np.array([1.0, np.nan, 2.0]))
