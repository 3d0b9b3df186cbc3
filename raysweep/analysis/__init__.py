"""Analysis of a study's tidy results table: correlations with CIs, joint regressions, figures, a report.

Pure pandas / numpy / scipy / matplotlib; the table comes from the tracking loader. Typical notebook use::

    from raysweep import analysis as ra
    table = ra.load_tracked_table("sqlite:///studies/quickstart/mlflow.db", "quickstart")
    ok, excluded = ra.split_excluded(table)
    best = ra.best_cfg_rows(ok)
    corr = ra.correlate(best, ra.latent_metric_columns(best), directions)
    ra.perspective_ranking(corr)
    joint = ra.pairwise_joint(best, ["latent/spatial/srss", "latent/semantic/lnc@5"], "gen/gfid")
    ra.regress(best, [["latent/spatial/srss", "latent/semantic/lnc@5"]])
    result = ra.analyze(table, "out/", latent_directions)  # everything the `analyze` command writes
"""
from __future__ import annotations

from raysweep.analysis.cards import MixedCardsError, card_summary, check_cards, differing_card_fields
from raysweep.analysis.correlation import best_cfg_rows, correlate, group_correlations, perspective_ranking
from raysweep.analysis.correlation_methods import METHODS, get_method
from raysweep.analysis.figures import (
    bubble,
    correlation_bar,
    curve_plot,
    heatmap,
    length_ratio_overlay,
    scatter,
    scatter_grid,
)
from raysweep.analysis.loading import load_tracked_table
from raysweep.analysis.paper import compare_with_paper, format_comparison
from raysweep.analysis.regression import OLSResult, leave_group_out, ols, pairwise_joint, regress
from raysweep.analysis.report import ReportSection, write_report
from raysweep.analysis.study import AnalysisOptions, StudyAnalysis, analyze, scoped_correlations
from raysweep.analysis.tidy import (
    DEFAULT_TARGET,
    FINISHED,
    latent_metric_columns,
    metric_columns,
    perspective_of,
    resolve_directions,
    signed_metric,
    split_excluded,
    usable_metrics,
)

__all__ = [
    "DEFAULT_TARGET",
    "FINISHED",
    "METHODS",
    "AnalysisOptions",
    "MixedCardsError",
    "OLSResult",
    "ReportSection",
    "StudyAnalysis",
    "analyze",
    "best_cfg_rows",
    "bubble",
    "card_summary",
    "check_cards",
    "compare_with_paper",
    "correlate",
    "correlation_bar",
    "curve_plot",
    "differing_card_fields",
    "format_comparison",
    "get_method",
    "group_correlations",
    "heatmap",
    "latent_metric_columns",
    "leave_group_out",
    "length_ratio_overlay",
    "load_tracked_table",
    "metric_columns",
    "ols",
    "pairwise_joint",
    "perspective_of",
    "perspective_ranking",
    "regress",
    "resolve_directions",
    "scatter",
    "scatter_grid",
    "scoped_correlations",
    "signed_metric",
    "split_excluded",
    "usable_metrics",
    "write_report",
]
