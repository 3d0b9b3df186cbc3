"""Latent-metric values -> the tokenizer's MLflow run: scalars as metrics, curves as JSON + a plot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # MLflow and matplotlib stay out of `raysweep metrics`, which only needs `split_values`
    from raysweep.config.plan import MetricJob
    from raysweep.engine.store import Store
    from raysweep.tracking import Tracker

GRID_SUFFIX = "_grid"
CURVES_SUFFIX = "_curves.json"  # `<job stage>_curves.json` beside the job's marker, and on the run under curves/:
# one file per stage, since a tokenizer run takes the curves of its latent-metric and its model-metric job


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


def log_latent_metrics(tracker: Tracker, run_id: str, values: dict[str, Any], directory: Path, stage: str,
                       params: dict[str, dict[str, Any]] | None = None) -> None:
    """Scalars as metrics, `params` ({metric: {param: value}}, e.g. `MetricSet.used_params`) as the tags
    `metrics.<name>.<param>` (a recomputed metric may change them), curves and per-class arrays as one JSON
    artifact (merged with the curves logged before into `directory`: adding a metric keeps the others') plus a PNG
    each under `figures/`. The JSON is named after the job's `stage`: another stage's curves on the same run stay."""
    from raysweep.analysis.figures import curve_plot
    from raysweep.atomic import write_json_atomic
    from raysweep.tracking.keys import METRIC_PARAM_PREFIX

    scalars, curves = split_values(values)
    tracker.log_metrics(run_id, scalars)
    if params:
        tracker.set_tags(run_id, {f"{METRIC_PARAM_PREFIX}{name}.{k}": str(v) for name, used in params.items()
                                  for k, v in used.items()})
    if not curves:
        return
    directory.mkdir(parents=True, exist_ok=True)
    merged = directory / f"{stage}{CURVES_SUFFIX}"
    logged = json.loads(merged.read_text()) if merged.is_file() else {}
    write_json_atomic(merged, {**logged, **{k: {"grid": g.tolist(), "values": v.tolist()}
                                            for k, (g, v) in curves.items()}})
    tracker.log_artifact(run_id, merged, "curves")
    for key, (grid, arr) in curves.items():
        name = key.replace("/", "_").replace("@", "at")
        for path in curve_plot(grid, {key: arr}, directory / f"{name}.png", title=key, xlabel=curve_xlabel(key),
                               ylabel=key):
            tracker.log_artifact(run_id, path, "figures")


def record_metrics(tracker: Tracker, store: Store, job: MetricJob, names: list[str], run_id: str,
                   values: dict[str, Any], artifacts: list[Path] | None = None,
                   params: dict[str, dict[str, Any]] | None = None) -> None:
    """Log the values of a metric job's metrics `names` (and its files under `figures/`, the metrics' versions as
    tags) on its upstream's run, then write their entries in the job's marker beside the entries still current: a
    resumed study finds them and logs nothing twice."""
    from raysweep.engine.store import provenance
    from raysweep.tracking.keys import METRIC_VERSION_PREFIX

    marker = store.marker(job)
    assert marker is not None
    log_latent_metrics(tracker, run_id, values, marker, job.stage, params)
    for path in artifacts or []:
        tracker.log_artifact(run_id, path, "figures")
    now = [e for e in job.metrics if e.name in names]
    tracker.set_tags(run_id, {f"{METRIC_VERSION_PREFIX}{e.name}": e.inputs["version"] for e in now})
    before = store.found(job) or {}
    entries = before.get("metrics")
    entries = dict(entries) if isinstance(entries, dict) else {}  # a list: a marker of the previous version
    entries.update({name: entry for name, entry in job.record()["metrics"].items() if name in names})
    store.mark_done(marker, provenance({"metrics": entries, "values": sorted({*values, *before.get("values", [])}),
                                        "run_id": run_id}))
