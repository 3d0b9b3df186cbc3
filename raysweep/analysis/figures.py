"""Study figures as PNG files (plus SVG on request); every function returns the paths it wrote.

Figures are built on `matplotlib.figure.Figure` objects rather than pyplot, so nothing is kept in a global figure
registry and no window is ever opened; the Agg backend is selected for any pyplot use downstream.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from raysweep.analysis.correlation_methods import METHODS  # noqa: E402
from raysweep.analysis.regression import ols  # noqa: E402
from raysweep.analysis.tidy import perspective_of, require_columns, signed_metric  # noqa: E402

DPI = 110
PANEL_INCHES = 3.2
MARKER_AREA = 22.0  # points^2 of a scatter marker up to FULL_MARKERS points; smaller beyond so 1,000s stay legible
FULL_MARKERS = 100


def save(fig: Figure, out_path: str | Path, svg: bool) -> list[Path]:
    """Write `out_path` as .png (and .svg when asked), creating the folder; returns the written paths."""
    path = Path(out_path)
    stem = path.stem if path.suffix.lower() in (".png", ".svg") else path.name  # keep dots in "sec@0.5"
    path.parent.mkdir(parents=True, exist_ok=True)
    paths = [path.parent / f"{stem}{ext}" for ext in (".png", ".svg") if ext == ".png" or svg]
    for written in paths:
        fig.savefig(written, dpi=DPI)
        fig.set_layout_engine("none")  # the layout solved for the first file holds for the second: skip re-solving
    return paths


def marker_area(n: int) -> float:
    """Marker area for n points: the full size up to `FULL_MARKERS`, then shrinking as 1/sqrt(n) (to a floor) so a
    1,000-run cloud shows its density instead of one blot."""
    return max(3.0, MARKER_AREA * min(1.0, float(np.sqrt(FULL_MARKERS / max(n, 1)))))


def draw_scatter(ax: Axes, table: pd.DataFrame, metric: str, target: str, directions: Mapping[str, bool],
                  hue: str | None) -> None:
    """Sign-normalised metric (higher = better latent) against the target, a least-squares line and Pearson r.

    The points are rasterized: in an SVG they are one embedded image instead of an element per run."""
    x = signed_metric(table, metric, directions)
    y = pd.to_numeric(table[target], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    labels = table[hue].astype(str).to_numpy() if hue in table.columns else np.full(len(table), "")
    area = marker_area(int(keep.sum()))
    for label in sorted(set(labels[keep])):
        sel = keep & (labels == label)
        ax.scatter(x[sel], y[sel], s=area, alpha=0.8, linewidths=0, label=label or None, rasterized=True)
    r = np.nan
    if keep.sum() >= 2 and np.ptp(x[keep]) > 0:
        slope, icept = np.polyfit(x[keep], y[keep], 1)
        grid = np.linspace(x[keep].min(), x[keep].max(), 2)
        ax.plot(grid, slope * grid + icept, color="black", lw=1.2)
        r = METHODS["pearson"].r(x[keep], y[keep])
    ax.set_title(f"{metric}\nr = {r:.2f} (n = {int(keep.sum())})", fontsize=9)
    ax.set_xlabel(metric if directions[metric] else f"-{metric}", fontsize=8)
    ax.set_ylabel(target, fontsize=8)
    if hue in table.columns and keep.any():
        ax.legend(fontsize=6, loc="best")


def scatter(table: pd.DataFrame, metric: str, target: str, directions: Mapping[str, bool], out_path: str | Path,
            hue: str | None = "cluster", svg: bool = False) -> list[Path]:
    """One metric against the target (points coloured by `hue` when that column exists)."""
    require_columns(table, [metric, target])
    fig = Figure(figsize=(4.2, 3.6), layout="constrained")
    draw_scatter(fig.add_subplot(), table, metric, target, directions, hue)
    return save(fig, out_path, svg)


def scatter_grid(table: pd.DataFrame, metrics: Sequence[str], target: str, directions: Mapping[str, bool],
                 out_path: str | Path, hue: str | None = "cluster", ncols: int = 4, svg: bool = False) -> list[Path]:
    """One panel per metric against the target (the paper's Figure 4 layout)."""
    require_columns(table, [*metrics, target])
    if not metrics:
        raise ValueError("scatter_grid needs at least one metric")
    ncols = min(ncols, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig = Figure(figsize=(PANEL_INCHES * ncols, PANEL_INCHES * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        draw_scatter(ax, table, metric, target, directions, hue)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    return save(fig, out_path, svg)


def correlation_bar(corr_df: pd.DataFrame, out_path: str | Path, method: str = "pearson",
                    svg: bool = False) -> list[Path]:
    """Horizontal bars of r with bootstrap-CI whiskers for one method, coloured by perspective."""
    require_columns(corr_df, ["metric", "method", "r", "ci_low", "ci_high"])
    rows = corr_df[corr_df["method"] == method].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"no rows with method {method!r}; present: {sorted(corr_df['method'].unique())}")
    perspectives = sorted({perspective_of(m) for m in rows["metric"]})
    colours = {p: f"C{i % 10}" for i, p in enumerate(perspectives)}
    fig = Figure(figsize=(6.5, 0.9 + 0.32 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(rows))
    err = np.abs(np.vstack([rows["r"] - rows["ci_low"], rows["ci_high"] - rows["r"]]).astype(float))
    ax.barh(pos, rows["r"].astype(float), xerr=np.nan_to_num(err), capsize=2,
            color=[colours[perspective_of(m)] for m in rows["metric"]])
    ax.set_yticks(pos, rows["metric"], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"{method} r (sign-normalised metric vs target)")
    return save(fig, out_path, svg)


def heatmap(table: pd.DataFrame, metrics: Sequence[str], out_path: str | Path, svg: bool = False) -> list[Path]:
    """Metric-by-metric Spearman correlation matrix (pairwise complete rows): which perspectives are collinear."""
    require_columns(table, metrics)
    corr = table[list(metrics)].apply(pd.to_numeric, errors="coerce").corr(method="spearman").to_numpy()
    k = len(metrics)
    fig = Figure(figsize=(1.6 + 0.55 * k, 1.2 + 0.5 * k), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(corr, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    ax.set_xticks(range(k), metrics, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), metrics, fontsize=7)
    for i in range(k):
        for j in range(k):
            colour = "white" if abs(corr[i, j]) > 0.6 else "black"  # readable on saturated cells
            ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=6, color=colour)
    fig.colorbar(image, ax=ax, label="Spearman rho")
    return save(fig, out_path, svg)


def bubble(table: pd.DataFrame, x: str, y: str, target: str, out_path: str | Path,
           svg: bool = False) -> list[Path]:
    """Two metrics as axes, bubble size and colour = target (the paper's Figure 8); title gives the joint OLS R^2."""
    require_columns(table, [x, y, target])
    data = table[[x, y, target]].apply(pd.to_numeric, errors="coerce").dropna()
    t = data[target].to_numpy(dtype=float)
    span = np.ptp(t) if len(t) else 0.0
    sizes = 30.0 + 370.0 * ((t - t.min()) / span if span > 0 else np.full(len(t), 0.5))
    fig = Figure(figsize=(5.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    points = ax.scatter(data[x], data[y], s=sizes, c=t, cmap="viridis_r", alpha=0.75, edgecolors="black",
                        linewidths=0.4)
    fig.colorbar(points, ax=ax, label=target)
    r2 = ols(data, [x, y], target).r2 if len(data) >= 4 else np.nan
    ax.set_title(f"{target} ~ {x} + {y}: R² = {r2:.2f}", fontsize=9)
    ax.set_xlabel(x, fontsize=8)
    ax.set_ylabel(y, fontsize=8)
    return save(fig, out_path, svg)


def curve_plot(x: np.ndarray, ys: Mapping[str, np.ndarray], out_path: str | Path, title: str, xlabel: str,
               ylabel: str, logy: bool = False, svg: bool = False) -> list[Path]:
    """Several curves over one shared x (shape (T,)), each ys[label] of shape (T,): VIV(t), FI(t), gFID vs CFG."""
    x = np.asarray(x, dtype=float)
    if not ys:
        raise ValueError("curve_plot needs at least one curve")
    fig = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for label, values in ys.items():
        values = np.asarray(values, dtype=float)
        if values.shape != x.shape:
            raise ValueError(f"curve {label!r} has shape {values.shape}, x has shape {x.shape}")
        ax.plot(x, values, marker="o", ms=3, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return save(fig, out_path, svg)


def _curves_by_tokenizer(frame: pd.DataFrame, column: str) -> dict[object, pd.Series]:
    """Each tokenizer's mean `column` per t (index t, ascending), from one groupby rather than a filter each."""
    means = frame.groupby(["tokenizer_id", "t"])[column].mean()
    return {name: curve.droplevel(0) for name, curve in means.groupby(level=0)}


def length_ratio_overlay(ratios: pd.DataFrame, viv: pd.DataFrame, out_path: str | Path, max_legend: int = 12,
                         svg: bool = False) -> list[Path]:
    """Per-segment length ratio against t (left axis) with each tokenizer's VIV(t) dashed (right axis): Figure 10.

    `ratios` has columns tokenizer_id, t (segment midpoint), length_ratio (runs of one tokenizer are averaged);
    `viv` has tokenizer_id, t, value and may be empty. A tokenizer keeps one colour on both axes.
    """
    require_columns(ratios, ["tokenizer_id", "t", "length_ratio"])
    require_columns(viv, ["tokenizer_id", "t", "value"])
    if ratios.empty:
        raise ValueError("length_ratio_overlay needs at least one length-ratio curve")
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    twin = ax.twinx() if not viv.empty else None
    names = sorted(set(ratios["tokenizer_id"]) | set(viv["tokenizer_id"]))
    ratio_curves, viv_curves = _curves_by_tokenizer(ratios, "length_ratio"), _curves_by_tokenizer(viv, "value")
    for i, name in enumerate(names):
        colour, label = f"C{i % 10}", name if len(names) <= max_legend else None
        if name in ratio_curves:
            curve = ratio_curves[name]
            ax.plot(curve.index, curve.to_numpy(), color=colour, marker="o", ms=2.5, label=label)
        if twin is not None and name in viv_curves:
            own = viv_curves[name]
            twin.plot(own.index, own.to_numpy(), color=colour, ls="--", lw=1.0)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("t (0 = noise, 1 = data)")
    ax.set_ylabel("segment length ratio (solid; 1 = straight)")
    if twin is not None:
        twin.set_ylabel("VIV(t) (dashed)")
    if len(names) <= max_legend:
        ax.legend(fontsize=7, loc="best")
    ax.set_title("Trajectory length ratio and velocity ambiguity", fontsize=10)
    return save(fig, out_path, svg)
