"""Joint linear models of generation quality: gFID ~ a + sum_j b_j metric_j (the paper's Figure 8 analysis).

Fits use `numpy.linalg.lstsq` on the design `X = [1, metrics]` of shape (n, p + 1). Leave-one-out R^2 is exact
without refitting: the LOO residual of row i is `e_i / (1 - h_ii)` with `h_ii` the hat-matrix diagonal, so
`PRESS = sum_i (e_i / (1 - h_ii))^2` and `loo_r2 = 1 - PRESS / sum_i (y_i - mean(y))^2`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from raysweep.analysis.tidy import DEFAULT_TARGET, require_columns

LEVERAGE_TOL = 1e-10  # a row with h_ii within this of 1 is fitted exactly, and its LOO residual is undefined


@dataclass(frozen=True)
class OLSResult:
    """An ordinary least-squares fit of `target` on `predictors` (rows with any NaN dropped; n rows used)."""

    predictors: tuple[str, ...]
    target: str
    coef: dict[str, float]
    intercept: float
    r2: float
    adj_r2: float
    loo_r2: float
    n: int

    def as_row(self) -> dict[str, object]:
        """Flat dict for a DataFrame row: `coef[name]` becomes column `coef:<name>`."""
        row = asdict(self)
        coef = row.pop("coef")
        row["predictors"] = " + ".join(self.predictors)
        return {**row, **{f"coef:{k}": v for k, v in coef.items()}}


def _design(table: pd.DataFrame, predictors: Sequence[str], target: str) -> tuple[np.ndarray, np.ndarray]:
    """Complete-case design matrix with intercept column, shape (n, p + 1), and target, shape (n,)."""
    require_columns(table, [*predictors, target])
    data = table[[*predictors, target]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    data = data[np.isfinite(data).all(axis=1)]
    return np.column_stack([np.ones(len(data)), data[:, :-1]]), data[:, -1]


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients (intercept first), shape (p + 1,)."""
    return np.linalg.lstsq(x, y, rcond=None)[0]


def _leverages(x: np.ndarray) -> np.ndarray:
    """Hat-matrix diagonal h_ii = ||U_i||^2 over the left singular vectors spanning col(X). Shape (n,)."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    rank_tol = s.max(initial=0.0) * max(x.shape) * np.finfo(float).eps
    return (u[:, s > rank_tol] ** 2).sum(axis=1)


def ols(table: pd.DataFrame, predictors: Sequence[str], target: str = DEFAULT_TARGET) -> OLSResult:
    """Fit `target ~ 1 + predictors`; R^2, adjusted R^2 and exact leave-one-out R^2 (NaN where undefined)."""
    if not predictors:
        raise ValueError("ols needs at least one predictor")
    x, y = _design(table, predictors, target)
    n, p = len(y), len(predictors)
    if n < p + 1:
        raise ValueError(f"{n} complete rows cannot fit {p} predictors plus an intercept")
    beta = _fit(x, y)
    resid = y - x @ beta
    sst = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / sst if sst > 0 else np.nan
    adj_r2 = 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1) if n > p + 1 else np.nan
    h = _leverages(x)
    if sst > 0 and (h < 1.0 - LEVERAGE_TOL).all():
        loo_r2 = 1.0 - float(((resid / (1.0 - h)) ** 2).sum()) / sst
    else:
        loo_r2 = np.nan
    return OLSResult(tuple(predictors), target, dict(zip(predictors, map(float, beta[1:]))), float(beta[0]),
                     r2, adj_r2, loo_r2, n)


def pairwise_joint(table: pd.DataFrame, candidates: Sequence[str], target: str = DEFAULT_TARGET) -> pd.DataFrame:
    """OLS of `target` on every pair of candidate metrics, best leave-one-out R^2 first.

    Columns: predictors, target, intercept, r2, adj_r2, loo_r2, n, x, y, coef_x, coef_y.
    Pairs with fewer than 3 complete rows are left out (no model can be fitted on them).
    """
    rows = []
    for a, b in combinations(candidates, 2):
        if len(_design(table, [a, b], target)[1]) < 3:
            continue
        fit = ols(table, [a, b], target)
        row = {k: v for k, v in fit.as_row().items() if not k.startswith("coef:")}
        rows.append({**row, "x": a, "y": b, "coef_x": fit.coef[a], "coef_y": fit.coef[b]})
    frame = pd.DataFrame(rows)
    return frame.sort_values("loo_r2", ascending=False, na_position="last").reset_index(drop=True) if rows else frame


def regress(table: pd.DataFrame, models: Sequence[Sequence[str]], target: str = DEFAULT_TARGET) -> pd.DataFrame:
    """Fit each predictor set (e.g. `[["latent/spatial/srss", "latent/semantic/lnc@5"], ["traj/efficiency"]]`);
    one row per model with `coef:<name>` columns, best leave-one-out R^2 first. The notebook entry point."""
    frame = pd.DataFrame([ols(table, list(predictors), target).as_row() for predictors in models])
    return frame.sort_values("loo_r2", ascending=False, na_position="last", ignore_index=True) if len(frame) else frame


def leave_group_out(
    table: pd.DataFrame, predictors: Sequence[str], target: str, group_col: str
) -> pd.DataFrame:
    """Fit on all groups but one, predict the held-out group; one row of prediction errors per group.

    Answers "does the linear model transfer to an unseen backbone / family?". Columns: group_col, n_train,
    n_test, rmse, mae, bias (mean of prediction - truth). A group whose complement cannot fit the model gets NaNs.
    """
    require_columns(table, [group_col])
    rows = []
    for group, held in table.groupby(group_col, sort=True):
        x_tr, y_tr = _design(table[table[group_col] != group], predictors, target)
        x_te, y_te = _design(held, predictors, target)
        rmse = mae = bias = np.nan
        if len(y_tr) >= len(predictors) + 1 and len(y_te) > 0:
            err = x_te @ _fit(x_tr, y_tr) - y_te
            rmse, mae, bias = float(np.sqrt((err ** 2).mean())), float(np.abs(err).mean()), float(err.mean())
        rows.append({group_col: group, "n_train": len(y_tr), "n_test": len(y_te), "rmse": rmse, "mae": mae,
                     "bias": bias})
    return pd.DataFrame(rows)
