"""`raysweep metrics PATH...`: latent metrics of any Parquet latent files (yours or a study's), in-process."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raysweep.config import ConfigError
from raysweep.data import read_latents
from raysweep.data.location import Location, is_dir, list_files
from raysweep.metrics import METRICS, compute_metrics
from raysweep.pipeline.metric_logging import split_values
from raysweep.pipeline.metric_stage import with_known_stats


def _expand(paths: Sequence[Location]) -> list[str | Path]:
    """Directories (local or pyarrow.fs URIs) become their Parquet files; files stay as given."""
    files: list[str | Path] = []
    for path in paths:
        files += list_files(path, "*.parquet") if is_dir(path) else [path]
    if not files:
        raise FileNotFoundError(f"no Parquet latent files in {', '.join(map(str, paths))}")
    return files


def metrics_for_files(paths: Sequence[Location], only: list[str] | None = None) -> dict[str, Any]:
    """Scalars keyed by MLflow name; curves as lists. Files are validated (one-line errors naming the file)."""
    names = only or sorted(METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        allowed = ", ".join(sorted(METRICS))
        raise ConfigError("--only", "", f"unknown metric(s) {', '.join(unknown)}; allowed: {allowed}")
    files = _expand(paths)
    batch, meta = read_latents(files)
    values = compute_metrics([batch], names, with_known_stats(names, {}, meta))
    scalars, curves = split_values(values)
    return {**scalars, **{k: v.tolist() for k, (_, v) in curves.items()}}
