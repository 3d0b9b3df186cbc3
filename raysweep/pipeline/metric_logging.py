"""Latent-metric values -> the tokenizer's MLflow run: scalars as metrics, curves as JSON + a plot."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # MLflow and matplotlib stay out of `raysweep metrics`, which only needs `split_values`
    from raysweep.pipeline.store import Store
    from raysweep.tracking import Tracker

GRID_SUFFIX = "_grid"


def split_values(values: dict[str, Any]) -> tuple[dict[str, float], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Scalars, and curves `key -> (grid, values)` (a curve `k` has its x grid under `k_grid`)."""
    scalars: dict[str, float] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, value in values.items():
        if key.endswith(GRID_SUFFIX):
            continue
        arr = np.asarray(value, dtype=float)
        if arr.ndim == 0:
            scalars[key] = float(arr)
        else:
            grid = np.asarray(values.get(key + GRID_SUFFIX, np.arange(arr.size)), dtype=float)
            curves[key] = (grid, arr)
    return scalars, curves


def curve_xlabel(key: str) -> str:
    """Per-class arrays (`..._per_class`) are indexed by class label, every other curve by time t."""
    return "class label" if key.endswith("_per_class") else "t"


def log_latent_metrics(tracker: Tracker, run_id: str, values: dict[str, Any], directory: Path,
                       params: dict[str, Any] | None = None) -> None:
    """Scalars as metrics, `params` (e.g. `metric_stage.resolved_params`) as params, curves and per-class
    arrays as one JSON artifact plus a PNG each under `figures/`."""
    from raysweep.analysis.figures import curve_plot

    scalars, curves = split_values(values)
    tracker.log_metrics(run_id, scalars)
    if params:
        tracker.log_params(run_id, params)
    if not curves:
        return
    tracker.log_json(run_id, {k: {"grid": g.tolist(), "values": v.tolist()} for k, (g, v) in curves.items()},
                     "curves/latent_curves.json")
    directory.mkdir(parents=True, exist_ok=True)
    for key, (grid, arr) in curves.items():
        name = key.replace("/", "_").replace("@", "at")
        for path in curve_plot(grid, {key: arr}, directory / f"{name}.png", title=key, xlabel=curve_xlabel(key),
                               ylabel=key):
            tracker.log_artifact(run_id, path, "figures")


def record_metrics(tracker: Tracker, store: Store, run_id: str, marker: Path, values: dict[str, Any],
                   artifacts: list[Path] | None = None, params: dict[str, Any] | None = None) -> None:
    """Log a metric job's values (and its files under `figures/`) on its run, then mark the job done: a resumed
    study finds the marker and logs nothing twice."""
    log_latent_metrics(tracker, run_id, values, marker, params)
    for path in artifacts or []:
        tracker.log_artifact(run_id, path, "figures")
    store.mark_done(marker, {"metrics": sorted(values), "run_id": run_id})
