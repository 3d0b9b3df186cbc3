"""Analysis of a study's tidy results table: correlations with CIs, joint regressions, figures, a report.

Pure pandas / numpy / scipy / matplotlib; the table comes from the tracking loader. Typical notebook use::

    from raysweep import analysis as ra
    ok, excluded = ra.split_excluded(table)
    best = ra.best_cfg_rows(ok)
    corr = ra.correlate(best, ra.latent_metric_columns(best), directions)
    ra.perspective_ranking(corr)
    joint = ra.pairwise_joint(best, ["latent/spatial/srss", "latent/semantic/lnc@5"], "gen/gfid")
"""
from __future__ import annotations

from raysweep.analysis.correlation import best_cfg_rows, correlate, group_correlations, perspective_ranking
from raysweep.analysis.correlation_methods import METHODS, get_method
from raysweep.analysis.figures import bubble, correlation_bar, curve_plot, heatmap, scatter, scatter_grid
from raysweep.analysis.regression import OLSResult, leave_group_out, ols, pairwise_joint
from raysweep.analysis.report import write_report
from raysweep.analysis.tidy import (
    DEFAULT_TARGET,
    FINISHED,
    latent_metric_columns,
    metric_columns,
    perspective_of,
    signed_metric,
    split_excluded,
)

__all__ = [
    "DEFAULT_TARGET",
    "FINISHED",
    "METHODS",
    "OLSResult",
    "best_cfg_rows",
    "bubble",
    "correlate",
    "correlation_bar",
    "curve_plot",
    "get_method",
    "group_correlations",
    "heatmap",
    "latent_metric_columns",
    "leave_group_out",
    "metric_columns",
    "ols",
    "pairwise_joint",
    "perspective_of",
    "perspective_ranking",
    "scatter",
    "scatter_grid",
    "signed_metric",
    "split_excluded",
    "write_report",
]
