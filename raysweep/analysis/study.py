"""The whole analysis of one study table, rows in, artifacts out (a folder); no MLflow here, the stage logs it.

    result = analyze(table, out_dir, latent_directions, AnalysisOptions(n_boot=200))

Steps: exclude failed / incomplete rows (listed, never dropped silently) -> refuse mixed evaluation cards -> each
run at its best CFG -> correlations of every latent / recon / trajectory metric with gFID, IS and FDr (overall,
partial given PSNR and rFID, per backbone, family, regularizer sweep and CFG scale, over the reconstruction-matched
tokenizers; CIs a tokenizer-level bootstrap) -> perspective ranking by |r| -> joint OLS of every pair of
perspectives' best metrics -> leave-one-family-out / leave-one-backbone-out errors of the best joint models ->
validity sections (`validity.py`) -> figures, tables, report.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from raysweep.analysis.cards import GENERATION, RECONSTRUCTION, check_cards, is_mixed
from raysweep.analysis.correlation import CORRELATION_COLUMNS, best_cfg_rows, correlate, perspective_ranking
from raysweep.analysis.figures import bubble, correlation_bar, heatmap, length_ratio_overlay, scatter_grid
from raysweep.analysis.lead_figures import lead_figures
from raysweep.analysis.paper import compare_with_paper
from raysweep.analysis.partial import RECONSTRUCTION_CONTROLS, partial_correlate, reconstruction_matched
from raysweep.analysis.regression import leave_group_out, pairwise_joint
from raysweep.analysis.report import ReportSection, write_report
from raysweep.analysis.tidy import (
    DEFAULT_TARGET,
    SCORE_DIRECTIONS,
    TARGET_DIRECTIONS,
    present_targets,
    resolve_directions,
    split_excluded,
    usable_metrics,
)
from raysweep.analysis.validity import validity_sections

# (group column, rows it groups): per backbone / family / regularizer sweep (`cluster`) at each run's best CFG, per
# CFG scale over all scales
GROUP_SCOPES = (("backbone", "best_cfg"), ("family", "best_cfg"), ("cluster", "best_cfg"), ("cfg_scale", "all_cfg"))
TOKENIZER = "tokenizer_id"  # the bootstrap's unit: all rows (seeds, backbones) of a tokenizer are drawn together
MATCHED_SCOPE = "recon_matched"
RANKING_COLUMNS = ("target", "rank", "perspective", "metric", "r", "ci_low", "ci_high", "n", "agreement", "paper_sign",
                   "vs_paper")
HELD_OUT = ("family", "backbone")  # generalisation: leave one of these out
SCOPED_COLUMNS = ("target", "scope", "group", *CORRELATION_COLUMNS)


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs of a study analysis; small `n_boot` keeps tests and tiny studies fast."""

    n_boot: int = 1000
    ci: float = 0.95
    seed: int = 0
    methods: tuple[str, ...] = ("pearson", "spearman", "kendall")
    allow_mixed_cards: bool = False
    joint_models: int = 3  # the best pairs drawn as bubble plots and tested for generalisation
    svg: bool = False  # PNG only unless asked: an SVG of a 1,000-run study costs as much again to draw

    def __post_init__(self) -> None:
        if self.n_boot < 10 or self.joint_models < 0:
            raise ValueError(f"analysis options: n_boot={self.n_boot} must be >= 10 and joint_models="
                             f"{self.joint_models} >= 0")


@dataclass(frozen=True)
class StudyAnalysis:
    """Every table the report shows (DataFrames) and the files written under `out_dir`."""

    table: pd.DataFrame
    excluded: pd.DataFrame
    best: pd.DataFrame
    cards: pd.DataFrame
    correlations: pd.DataFrame
    ranking: pd.DataFrame
    joint: pd.DataFrame
    generalisation: pd.DataFrame
    paper: pd.DataFrame
    figures: list[Path]
    report: Path


def scoped_correlations(analysed: pd.DataFrame, best: pd.DataFrame, metrics: Sequence[str],
                        directions: Mapping[str, bool], targets: Sequence[str],
                        options: AnalysisOptions) -> pd.DataFrame:
    """`correlate` against each target: over all runs at their best CFG (scope `best_cfg`, group `all`; with the
    `partial_pearson` rows given reconstruction quality when the table has PSNR and rFID), then per backbone,
    family, regularizer sweep (best CFG rows) and CFG scale (all rows) when the study has more than one of them,
    and over the reconstruction-matched tokenizers (scope `recon_matched`). CIs: tokenizer-level bootstrap."""
    def coefficients(frame: pd.DataFrame, target: str) -> pd.DataFrame:
        return correlate(frame, metrics, directions, target, options.methods, options.n_boot, options.ci,
                         options.seed, TOKENIZER)

    controls = [c for c in RECONSTRUCTION_CONTROLS if c in best.columns]
    matched, matched_label = reconstruction_matched(best)
    parts = []
    for target in targets:
        parts.append(coefficients(best, target).assign(target=target, scope="best_cfg", group="all"))
        if len(controls) == len(RECONSTRUCTION_CONTROLS):
            partial = partial_correlate(best, metrics, directions, target, controls, options.n_boot, options.ci,
                                        options.seed, TOKENIZER)
            parts.append(partial.assign(target=target, scope="best_cfg", group="all"))
        for column, rows in GROUP_SCOPES:
            frame = best if rows == "best_cfg" else analysed
            if column not in frame.columns or frame[column].nunique() < 2:
                continue
            for value, part in frame.groupby(column, sort=True):
                parts.append(coefficients(part, target).assign(
                    target=target, scope=column, group=f"{value:g}" if isinstance(value, float) else str(value)))
        if matched[TOKENIZER].nunique() >= 3:
            parts.append(coefficients(matched, target).assign(target=target, scope=MATCHED_SCOPE, group=matched_label))
    if not parts:
        return pd.DataFrame(columns=list(SCOPED_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(SCOPED_COLUMNS)]


def rank_perspectives(correlations: pd.DataFrame) -> pd.DataFrame:
    """Pearson perspective ranking by |r| per target over all runs at their best CFG (the paper's Figures 4-7)."""
    overall = correlations[(correlations["scope"] == "best_cfg") & (correlations["group"] == "all")]
    parts = [perspective_ranking(part).assign(target=target) for target, part in overall.groupby("target", sort=False)
             if part["agreement"].notna().any()]
    if not parts:
        return pd.DataFrame(columns=list(RANKING_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(RANKING_COLUMNS)]


def generalisation(best: pd.DataFrame, joint: pd.DataFrame, models: int) -> pd.DataFrame:
    """Leave-one-family-out and leave-one-backbone-out prediction errors of the `models` best joint pairs."""
    parts = []
    for row in joint.head(models).itertuples(index=False):
        for column in HELD_OUT:
            if column in best.columns and best[column].nunique() >= 2:
                errors = leave_group_out(best, [row.x, row.y], row.target, column)
                parts.append(errors.rename(columns={column: "group"}).assign(model=row.predictors, held_out=column))
    if not parts:
        return pd.DataFrame(columns=["model", "held_out", "group", "n_train", "n_test", "rmse", "mae", "bias"])
    frame = pd.concat(parts, ignore_index=True)
    return frame[["model", "held_out", "group", "n_train", "n_test", "rmse", "mae", "bias"]]


def overlay_curves(analysed: pd.DataFrame, ratios: pd.DataFrame,
                   viv: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attach tokenizer ids to the analysed runs' curves; segment i of M is drawn at its midpoint t = (i+1/2)/M."""
    runs = analysed.drop_duplicates("diffusion_run_id").set_index("diffusion_run_id")["tokenizer_id"]
    ratios = ratios[ratios["diffusion_run_id"].isin(runs.index)]
    ratios = ratios.assign(tokenizer_id=ratios["diffusion_run_id"].map(runs),
                           t=(ratios["segment"] + 0.5) / ratios["n_segments"])
    tokenizers = analysed.drop_duplicates("tokenizer_run_id").set_index("tokenizer_run_id")["tokenizer_id"]
    viv = viv[viv["tokenizer_run_id"].isin(tokenizers.index)]
    return ratios, viv.assign(tokenizer_id=viv["tokenizer_run_id"].map(tokenizers))


def _slug(name: str) -> str:
    return name.replace("/", "_")


def _figures(analysed: pd.DataFrame, best: pd.DataFrame, metrics: list[str], directions: Mapping[str, bool],
             correlations: pd.DataFrame, joint: pd.DataFrame, curves: tuple[pd.DataFrame, pd.DataFrame] | None,
             out: Path, options: AnalysisOptions) -> list[Path]:
    """Every figure the data allows, PNG (+ SVG): scatter grids and correlation bars per target, the collinearity
    heatmap, bubble plots of the best joint models, trajectory scores vs gFID, length ratios with VIV(t)."""
    svg = options.svg
    paths: list[Path] = []
    overall = correlations[correlations["scope"] == "best_cfg"]
    for target, corr in overall.groupby("target", sort=False):
        paths += scatter_grid(best, metrics, target, directions, out / f"scatter_{_slug(target)}.png", svg=svg)
        paths += correlation_bar(corr, out / f"correlations_{_slug(target)}.png", svg=svg)
    if len(metrics) >= 2:
        paths += heatmap(best, metrics, out / "metric_heatmap.png", svg=svg)
    for i, row in enumerate(joint.head(options.joint_models).itertuples(index=False)):
        paths += bubble(best, row.x, row.y, row.target, out / f"bubble_{i + 1}.png", svg=svg)
    trajectory = [m for m in metrics if m.startswith("traj/")]
    if trajectory and DEFAULT_TARGET in overall["target"].values:
        paths += scatter_grid(best, trajectory, DEFAULT_TARGET, directions, out / "trajectory_vs_gfid.png",
                              ncols=2, svg=svg)
    if curves is not None:
        ratios, viv = overlay_curves(analysed, *curves)
        if not ratios.empty:
            paths += length_ratio_overlay(ratios, viv, out / "length_ratio_viv.png", svg=svg)
    return paths


def analyze(table: pd.DataFrame, out_dir: str | Path, latent_directions: Mapping[str, bool],
            options: AnalysisOptions | None = None, curves: tuple[pd.DataFrame, pd.DataFrame] | None = None,
            study_name: str = "study", sections: Sequence[ReportSection] = ()) -> StudyAnalysis:
    """Analyse a `study_table` and write every artifact to `out_dir`.

    `latent_directions` maps latent metric keys to higher-is-better (the metric registry's); recon, trajectory and
    target directions are built in. `curves` = (length ratios, VIV(t)) from the tracking loaders, or None.
    `sections` are added to the report after the built-in ones (e.g. a proxy allocation's).
    Raises `MixedCardsError` when the analysed rows span several evaluation cards, unless allowed.
    """
    options = options or AnalysisOptions()
    out = Path(out_dir)
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    if not table.empty:
        table.to_csv(out / "table.csv", index=False)
        table.to_parquet(out / "table.parquet", index=False)
    has_target = not table.empty and DEFAULT_TARGET in table.columns
    analysed, excluded = split_excluded(table) if has_target else (table.iloc[:0], table)
    cards = pd.concat([check_cards(analysed, options.allow_mixed_cards, kind) for kind in (GENERATION, RECONSTRUCTION)],
                      ignore_index=True)
    best = best_cfg_rows(analysed) if len(analysed) else analysed
    directions = {**resolve_directions(best.columns, {**latent_directions, **SCORE_DIRECTIONS}),
                  **TARGET_DIRECTIONS}
    metrics = usable_metrics(best, directions)
    targets = present_targets(best)
    correlations = scoped_correlations(analysed, best, metrics, directions, targets, options)
    ranking = rank_perspectives(correlations)
    gfid_ranking = ranking[ranking["target"] == DEFAULT_TARGET]
    candidates = [m for m in gfid_ranking["metric"] if m.startswith("latent/")]
    joint = pairwise_joint(best, candidates, DEFAULT_TARGET)
    general = generalisation(best, joint, options.joint_models)
    overall = correlations[correlations["scope"] == "best_cfg"]
    paper = compare_with_paper(overall[overall["target"] == DEFAULT_TARGET], best)
    figures = _figures(analysed, best, metrics, directions, correlations, joint, curves, figures_dir, options)
    for name, frame in (("correlations", correlations), ("perspective_ranking", ranking), ("joint_ols", joint),
                        ("generalisation", general), ("cards", cards), ("paper_comparison", paper),
                        ("excluded", excluded)):
        frame.to_csv(out / f"{name}.csv", index=False)
    notes = [f"{kind.scores} scores span {(cards['scores'] == kind.scores).sum()} evaluation cards (allowed by "
             "--allow-mixed-cards): they may not be comparable; see 'Evaluation cards'."
             for kind in (GENERATION, RECONSTRUCTION) if is_mixed(analysed, kind)]
    grouped = correlations[correlations["scope"] != "best_cfg"]
    validity, warnings = validity_sections(best)
    notes += warnings
    built_in = [
        *validity,
        ReportSection("Correlations per backbone, family, regularizer sweep, CFG scale; reconstruction-matched",
                      grouped, "scope = the column grouped by (cluster = one regularizer's sweep); backbone, family "
                      "and cluster use each run's best CFG; recon_matched = the tokenizers in the PSNR interquartile "
                      "range. partial_pearson rows (scope best_cfg) hold PSNR and rFID fixed.", collapsed=True),
        ReportSection("Generalisation of the joint models", general,
                      "Fit on all groups but one, predict the held-out family / backbone (errors in target units)."),
        ReportSection("Evaluation cards", cards, "Card hash of the analysed rows and the card fields that differ."),
        ReportSection("Comparison with the paper", paper,
                      "Paper: conv f16d32 tokenizers, SiT-B, Pearson r vs gFID; ours: all runs at their best CFG."),
    ]
    lead = lead_figures(best, ranking, paper, directions, figures_dir, svg=options.svg) if len(best) else None
    lead_paths = [*lead.ranking, *lead.headline, *lead.parallel] if lead else []
    report = write_report(out, study_name, best, overall, joint, figures, excluded, ranking=ranking,
                          sections=[*built_in, *sections], notes=notes, lead=lead.pngs() if lead else [])
    return StudyAnalysis(table, excluded, best, cards, correlations, ranking, joint, general, paper,
                         [*lead_paths, *figures], report)

