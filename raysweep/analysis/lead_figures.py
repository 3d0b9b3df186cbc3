"""The three figures a report opens with, because they answer the study's question (which latent property predicts
gFID, and how sure we are): the perspective ranking with bootstrap CIs, the best metric against gFID beside the
paper's coefficient, and a parallel-coordinates view from tokenizer choices through latent metrics to gFID.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from raysweep.analysis.figures import draw_scatter, save
from raysweep.analysis.tidy import DEFAULT_TARGET, require_columns

TOKENIZER_AXES = ("family", "cluster")  # categorical tokenizer choices, drawn when they vary
PARALLEL_METRICS = 4  # the best-ranked latent metrics drawn as axes


@dataclass(frozen=True)
class LeadFigures:
    """Paths of the lead figures (PNG first, then SVG if asked); a figure the data cannot support is empty."""

    ranking: list[Path]
    headline: list[Path]
    parallel: list[Path]

    def pngs(self) -> list[Path]:
        return [p for paths in (self.ranking, self.headline, self.parallel) for p in paths if p.suffix == ".png"]


def _paper_by_metric(paper: pd.DataFrame) -> dict[str, tuple[str, float]]:
    """Our metric name -> (paper item, paper r) for the items the comparison matched to one of our metrics."""
    if paper.empty:
        return {}
    rows = paper[paper["metric"].astype(str).str.len() > 0]
    return {m: (item, float(r)) for m, item, r in zip(rows["metric"], rows["item"], rows["paper"]) if " + " not in m}


def ranking_figure(ranking: pd.DataFrame, paper: pd.DataFrame, out_path: str | Path,
                   svg: bool = False) -> list[Path]:
    """One bar per perspective (its best metric), Pearson r with its bootstrap CI, best first; the paper's r as a
    diamond where the paper reports that metric."""
    require_columns(ranking, ["perspective", "metric", "r", "ci_low", "ci_high"])
    if ranking.empty:
        return []
    rows = ranking.reset_index(drop=True)
    paper_r = _paper_by_metric(paper)
    fig = Figure(figsize=(6.8, 1.2 + 0.42 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(rows))
    r = rows["r"].astype(float).to_numpy()
    err = np.abs(np.vstack([r - rows["ci_low"].astype(float), rows["ci_high"].astype(float) - r]))
    ax.barh(pos, r, xerr=np.nan_to_num(err), capsize=3, color=[f"C{i % 10}" for i in pos], alpha=0.85)
    marks = [(i, paper_r[m][1]) for i, m in enumerate(rows["metric"]) if m in paper_r]
    if marks:
        ax.scatter([v for _, v in marks], [i for i, _ in marks], marker="D", color="black", zorder=3,
                   label="paper")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(pos, [f"{p}\n{m}" for p, m in zip(rows["perspective"], rows["metric"])], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Pearson r vs gFID, 95% bootstrap CI (r < 0: better latent, better gFID)", fontsize=8)
    ax.set_title("Which latent property predicts gFID: perspectives ranked", fontsize=10)
    return save(fig, out_path, svg)


def headline_scatter(best: pd.DataFrame, ranking: pd.DataFrame, paper: pd.DataFrame,
                     directions: Mapping[str, bool], out_path: str | Path, target: str = DEFAULT_TARGET,
                     svg: bool = False) -> list[Path]:
    """The top-ranked metric against the target, our r and CI in the title beside the paper's r when the paper
    reports that metric (else the paper's strongest latent item, named, for scale)."""
    require_columns(ranking, ["metric", "r", "ci_low", "ci_high"])
    if ranking.empty:
        return []
    top = ranking.iloc[0]
    metric = str(top["metric"])
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.add_subplot()
    draw_scatter(ax, best, metric, target, directions, "cluster")
    paper_r = _paper_by_metric(paper)
    if metric in paper_r:
        reference = f"paper ({paper_r[metric][0]}): r = {paper_r[metric][1]:.2f}"
    elif not paper.empty:
        item = paper.iloc[0]
        reference = f"paper's strongest, {item['item']}: r = {float(item['paper']):.2f}"
    else:
        reference = "no paper value"
    ax.set_title(f"Best predictor: {metric}\nours r = {float(top['r']):.2f} [{float(top['ci_low']):.2f}, "
                 f"{float(top['ci_high']):.2f}] (n = {int(top.get('n', 0))}); {reference}", fontsize=9)
    return save(fig, out_path, svg)


def _axis_values(column: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    """Numbers for one axis: numeric columns as they are, categories as codes (with their labels)."""
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(dtype=float), None
    labels = sorted(column.astype(str).unique())
    return column.astype(str).map({v: float(i) for i, v in enumerate(labels)}).to_numpy(dtype=float), labels


def parallel_coordinates(best: pd.DataFrame, ranking: pd.DataFrame, out_path: str | Path,
                         target: str = DEFAULT_TARGET, svg: bool = False) -> list[Path]:
    """One line per run across tokenizer choices (family, regularizer cluster), PSNR, the best-ranked latent
    metrics and the target; every axis scaled to [0, 1] between its own min and max, lines coloured by target."""
    latent = [m for m in ranking["metric"] if str(m).startswith("latent/") and m in best.columns][:PARALLEL_METRICS]
    axes = [c for c in TOKENIZER_AXES if c in best.columns and best[c].nunique() > 1]
    axes += [c for c in ("recon/psnr",) if c in best.columns] + latent + [target]
    data = best.dropna(subset=[target, *latent]).reset_index(drop=True)
    if len(axes) < 3 or len(data) < 2:
        return []
    fig = Figure(figsize=(1.6 * len(axes) + 1.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    scaled = np.empty((len(data), len(axes)))
    for j, name in enumerate(axes):
        values, labels = _axis_values(data[name])
        lo, hi = np.nanmin(values), np.nanmax(values)
        scaled[:, j] = (values - lo) / (hi - lo) if hi > lo else 0.5
        ticks = [(i - lo) / (hi - lo) if hi > lo else 0.5 for i in range(len(labels))] if labels else [0.0, 1.0]
        texts = labels if labels else [f"{lo:.3g}", f"{hi:.3g}"]
        for y, text in zip(ticks, texts):
            ax.text(j, y, f" {text}", fontsize=6, va="center", color="dimgray")
    colours = pd.to_numeric(data[target]).to_numpy(dtype=float)
    cmap = fig.colorbar(ax.scatter(np.full(len(data), len(axes) - 1), scaled[:, -1], c=colours, cmap="viridis_r",
                                   s=12, zorder=3), ax=ax, label=target).cmap
    span = np.ptp(colours) or 1.0
    positions = np.broadcast_to(np.arange(len(axes), dtype=float), scaled.shape)
    lines = LineCollection(list(np.stack([positions, scaled], axis=-1)), colors=cmap((colours - colours.min()) / span),
                           alpha=0.7, linewidths=1.0, rasterized=True)  # one artist for all runs, not one each
    ax.add_collection(lines)
    for j in range(len(axes)):
        ax.axvline(j, color="black", lw=0.6)
    ax.set_xticks(range(len(axes)), axes, rotation=20, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.6)
    ax.set_title("Tokenizer choices -> latent metrics -> gFID (each axis min to max)", fontsize=10)
    return save(fig, out_path, svg)


def lead_figures(best: pd.DataFrame, ranking: pd.DataFrame, paper: pd.DataFrame, directions: Mapping[str, bool],
                 out_dir: str | Path, target: str = DEFAULT_TARGET, svg: bool = False) -> LeadFigures:
    """All three for `target` (the rows of a multi-target `ranking` for it), written under `out_dir`."""
    if "target" in ranking.columns:
        ranking = ranking[ranking["target"] == target]
    out = Path(out_dir)
    return LeadFigures(ranking_figure(ranking, paper, out / "lead_ranking.png", svg=svg),
                       headline_scatter(best, ranking, paper, directions, out / "lead_headline.png", target, svg),
                       parallel_coordinates(best, ranking, out / "lead_parallel.png", target, svg))
