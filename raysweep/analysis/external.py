"""Results tables raysweep did not produce (a paper's table, a lab's spreadsheet) as a study's tidy table, so the
study analysis (`analyze`) runs on them unchanged: same ranking, CIs, joint regressions, figures and report.

    columns = TableColumns(id="tokenizer", target="gfid", lower_is_better=("viv",))
    result, as_json = analyze_table("vaes.csv", columns, "out/")      # = analyze(tidy_from_external(...)...)

Mapping: `--id` -> `tokenizer_id` (rows sharing an id are seeds of one tokenizer: seed = its occurrence number),
`--target` -> `gen/gfid` (lower is better), `--group` -> `family`; every run is FINISHED on one backbone `external`
(no CFG scales: a row is a run at its reported guidance). A metric column keeps its name when raysweep knows it
(`latent/<perspective>/<name>`, `recon/*`, `traj/*`: its perspective and registry direction); any other column
becomes `latent/<column>/<column>`, a perspective of its own. Directions: `--lower-is-better` lists the metrics where
lower means a better latent; a known key not listed keeps its registry direction, any other column is higher-is-better.
Non-numeric cells become missing; missing values are excluded pair by pair (each correlation's `n`), and counted in
the report's "Missing values" section.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from raysweep.analysis.report import ReportSection
from raysweep.analysis.study import AnalysisOptions, StudyAnalysis, analyze
from raysweep.analysis.tidy import DEFAULT_TARGET, FINISHED, PREDICTOR_PREFIXES, SCORE_DIRECTIONS, resolve_directions
from raysweep.config.errors import ConfigError, allowed

TABLE_SUFFIXES = (".csv", ".parquet")
EXTERNAL_BACKBONE = "external"


@dataclass(frozen=True)
class TableColumns:
    """Which columns of an external table are what (the `--id`, `--target`, ... options). `metrics` empty: every
    other numeric column."""

    id: str
    target: str
    metrics: tuple[str, ...] = ()
    lower_is_better: tuple[str, ...] = ()
    group: str | None = None


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; any other suffix or a missing file is a one-line ConfigError."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(str(path), "--table", f"unknown table format {path.suffix!r}; allowed: "
                                                f"{allowed(TABLE_SUFFIXES)}")
    if not path.is_file():
        raise ConfigError(str(path), "--table", "no such file")
    return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)


def require_table_columns(frame: pd.DataFrame, names: Sequence[str], option: str, source: str) -> None:
    """Every named column exists, else one line naming the file, the option, the column and the allowed columns."""
    for name in names:
        if name not in frame.columns:
            raise ConfigError(source, option, f"column {name!r} not in the table; allowed: "
                                              f"{allowed(map(str, frame.columns))}")


def metric_names(frame: pd.DataFrame, columns: TableColumns, source: str, exclude: Sequence[str] = ()) -> list[str]:
    """The metric columns: `columns.metrics`, or every numeric column but the id, target, group and `exclude`."""
    taken = {columns.id, columns.target, columns.group, *exclude}
    if columns.metrics:
        require_table_columns(frame, columns.metrics, "--metrics", source)
        return [m for m in columns.metrics if m not in taken]
    return [str(c) for c in frame.columns if c not in taken and pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])]


def check_columns(frame: pd.DataFrame, columns: TableColumns, source: str, exclude: Sequence[str] = (),
                  chosen: Sequence[str] = (), option: str = "--metrics") -> list[str]:
    """Validate every named column; returns the metric columns: `chosen` (named by `option`, e.g. replay's
    --features) or `metric_names` without `exclude`."""
    require_table_columns(frame, [columns.id], "--id", source)
    require_table_columns(frame, [columns.target], "--target", source)
    if columns.group is not None:
        require_table_columns(frame, [columns.group], "--group", source)
    require_table_columns(frame, chosen, option, source)
    metrics = list(chosen) or metric_names(frame, columns, source, exclude)
    stray = [m for m in columns.lower_is_better if m not in metrics]
    if stray:
        raise ConfigError(source, "--lower-is-better", f"{stray[0]!r} is not one of the metrics; allowed: "
                                                       f"{allowed(metrics)}")
    if not metrics:
        raise ConfigError(source, option, "no numeric metric column besides --id and --target")
    return metrics


def tidy_name(column: str) -> str:
    """A table column's metric key: kept when raysweep knows the prefix, else a perspective of its own."""
    if column.startswith(PREDICTOR_PREFIXES):
        return column
    slug = column.replace("/", "_")
    return f"latent/{slug}/{slug}"


def metric_directions_of(metrics: Sequence[str], columns: TableColumns) -> dict[str, bool]:
    """Tidy key -> higher is better (see the module docstring for the rule). The built-in recon/ and traj/ score
    directions win, as they do in `analyze`. The registry imports torch: asked only when a key is a known one."""
    keys = [tidy_name(m) for m in metrics]
    registry: dict[str, bool] = {}
    if any(m.startswith(PREDICTOR_PREFIXES) for m in metrics):
        from raysweep.metrics import metric_directions

        registry = resolve_directions(keys, metric_directions())
    declared = {k: m not in columns.lower_is_better and registry.get(k, True) for k, m in zip(keys, metrics)}
    return {**declared, **resolve_directions(keys, SCORE_DIRECTIONS)}


def tidy_from_external(frame: pd.DataFrame, columns: TableColumns,
                       source: str) -> tuple[pd.DataFrame, dict[str, bool]]:
    """(the study-shaped tidy table, metric directions) of an external table; see the module docstring."""
    metrics = check_columns(frame, columns, source)
    ids = frame[columns.id].astype(str)
    tidy = pd.DataFrame({
        "tokenizer_id": ids.to_numpy(),
        "family": (frame[columns.group].astype(str) if columns.group else pd.Series("all", index=frame.index)),
        "backbone": EXTERNAL_BACKBONE,
        "seed": ids.groupby(ids).cumcount().to_numpy(),
        "status": FINISHED,
        DEFAULT_TARGET: pd.to_numeric(frame[columns.target], errors="coerce").to_numpy(dtype=float),
        **{tidy_name(m): pd.to_numeric(frame[m], errors="coerce").to_numpy(dtype=float) for m in metrics},
    })
    return tidy, metric_directions_of(metrics, columns)


def original_names(metrics: Sequence[str]) -> dict[str, str]:
    """Tidy key -> the table's column name (for output in the user's own names)."""
    return {tidy_name(m): m for m in metrics}


def missing_values_section(frame: pd.DataFrame, columns: TableColumns, metrics: Sequence[str]) -> ReportSection:
    """Per metric column: rows, missing values (non-numeric cells count as missing) and the pairs left with the
    target, which is each correlation's `n` before the best-run selection."""
    target = pd.to_numeric(frame[columns.target], errors="coerce").to_numpy(dtype=float)
    rows = []
    for column in [columns.target, *metrics]:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        rows.append({"column": column, "rows": len(values), "missing": int((~np.isfinite(values)).sum()),
                     "pairs_with_target": int((np.isfinite(values) & np.isfinite(target)).sum())})
    return ReportSection("Missing values", pd.DataFrame(rows),
                         "Missing or non-numeric cells; each correlation excludes its pairs with a missing value.")


def correlations_json(correlations: pd.DataFrame, directions: Mapping[str, bool], names: Mapping[str, str],
                      n: int) -> dict[str, object]:
    """`analyze --json`: the gFID correlations over all runs, `r` sign-normalised (higher = better latent) and
    `r_raw` of the column as given (every method is odd in x, so r_raw = ±r)."""
    overall = correlations[(correlations["scope"] == "best_cfg") & (correlations["target"] == DEFAULT_TARGET)]
    rows = [{"metric": names.get(row.metric, row.metric), "method": row.method, "n": int(row.n),
             "r_raw": row.r if directions[row.metric] else -row.r, "r": row.r, "ci_low": row.ci_low,
             "ci_high": row.ci_high} for row in overall.itertuples(index=False)]
    return {"n": n, "correlations": rows}


def analyze_table(path: str | Path, columns: TableColumns, out_dir: str | Path,
                  options: AnalysisOptions | None = None) -> tuple[StudyAnalysis, dict[str, object]]:
    """The study analysis of an external table, written to `out_dir`; returns it with its `--json` object."""
    frame = read_table(path)
    tidy, directions = tidy_from_external(frame, columns, str(path))
    metrics = metric_names(frame, columns, str(path))
    result = analyze(tidy, out_dir, directions, options, study_name=Path(path).stem,
                     sections=[missing_values_section(frame, columns, metrics)])
    n = int(result.best["tokenizer_id"].nunique()) if len(result.best) else 0
    return result, correlations_json(result.correlations, directions, original_names(metrics), n)
