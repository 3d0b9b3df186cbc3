"""A study report: one self-contained HTML file (inline CSS, images as base64 `data:` URIs, no external links) that
opens anywhere offline or as an MLflow artifact, plus a `report.md` summary for terminals and pull requests.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from raysweep.analysis.correlation import perspective_ranking
from raysweep.analysis.noise import measure_noise
from raysweep.analysis.regression import OLSResult

IMAGE_MIME = {".png": "image/png", ".svg": "image/svg+xml"}
EXCLUDED_COLUMNS = ("tokenizer_id", "tokenizer_seed", "backbone", "seed", "cfg_scale", "status", "reason")
CORRELATION_SHOWN = ("target", "metric", "method", "r", "ci_low", "ci_high", "p_value", "n", "agreement")
REGRESSION_SHOWN = ("predictors", "coef_x", "coef_y", "intercept", "r2", "adj_r2", "loo_r2", "n")
CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.55rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.6rem; } figure img { max-width: 100%; border: 1px solid #eee; }
figure.lead { display: block; margin: 1rem 0; } summary h2 { display: inline; border: none; }
details { margin-top: 1.2rem; } summary { cursor: pointer; }
figcaption { font-size: 0.8rem; color: #555; } .note { color: #555; font-size: 0.85rem; }
.warn { background: #fff4d6; border-left: 4px solid #d9a400; padding: 0.4rem 0.8rem; }
"""
CellStyle = Callable[[pd.Series, str], str]


R_CONVENTION = ("Sign convention (every r in this report): r = corr(sign-normalised metric, target), each metric "
                "oriented so that higher means a better latent (e.g. -VIV). Against gFID (lower is better) a metric "
                "that predicts the paper's way has r < 0; agreement > 0 always means a better latent went with better "
                "generation, and vs_paper says whether a metric goes the paper's way or the opposite way.")
CI_NOTE = ("CIs: 95 % percentile intervals of a tokenizer-level bootstrap (tokenizers resampled with all their "
           "diffusion seeds together, not rows as if independent).")
HEADLINE_TARGET, HEADLINE_METHOD = "gen/gfid", "pearson"


@dataclass(frozen=True)
class ReportSection:
    """An extra table in the report (grouped correlations, generalisation, cards, ...); `collapsed` folds it."""

    title: str
    frame: pd.DataFrame
    note: str = ""
    collapsed: bool = False


def _fmt(value: object) -> str:
    """Compact cell text: 4 significant digits for floats, a dash for NaN."""
    if isinstance(value, (float, np.floating)):
        return "–" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def _html_table(frame: pd.DataFrame, cell_style: CellStyle | None = None) -> str:
    """Escaped HTML table; `cell_style(row, column)` may return an inline CSS string per cell."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            style = cell_style(row, column) if cell_style else ""
            attr = f' style="{style}"' if style else ""
            cells.append(f"<td{attr}>{html.escape(_fmt(row[column]))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def markdown_table(frame: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table (pipes in cells escaped)."""
    def cell(v: object) -> str:
        return _fmt(v).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _agreement_style(row: pd.Series, column: str) -> str:
    """Green where a better latent goes with better generation, red where against it; opacity = strength."""
    if column not in ("r", "agreement") or not np.isfinite(row.get("agreement", np.nan)):
        return ""
    a = float(row["agreement"])
    rgb = "46,160,67" if a > 0 else "215,58,73"
    return f"background: rgba({rgb},{0.65 * min(abs(a), 1.0):.2f})"


def _shown(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The listed columns that the frame has, in that order (all columns if it has none of them)."""
    present = [c for c in columns if c in frame.columns]
    return frame[present] if present else frame


def _regression_frame(regressions: pd.DataFrame | Sequence[OLSResult]) -> pd.DataFrame:
    """Accept `pairwise_joint` output or a list of `OLSResult`s."""
    if isinstance(regressions, pd.DataFrame):
        return regressions
    return pd.DataFrame([fit.as_row() for fit in regressions])


def _ranking(corr_df: pd.DataFrame) -> pd.DataFrame:
    """Perspective ranking by Pearson, or by the first method present when Pearson was not computed."""
    if corr_df.empty:
        return corr_df
    methods = list(corr_df["method"].unique())
    ranked = perspective_ranking(corr_df, "pearson" if "pearson" in methods else methods[0])
    return _shown(ranked, ("rank", "perspective", "metric", "method", "r", "ci_low", "ci_high", "n", "paper_sign",
                           "vs_paper"))


def _strongest(corr: pd.DataFrame) -> pd.DataFrame:
    """Correlation rows by decreasing |r| (Pearson only when present): strength, whichever way it goes."""
    if corr.empty or "r" not in corr.columns:
        return corr
    pearson = corr["method"] == HEADLINE_METHOD if "method" in corr.columns else pd.Series(False, index=corr.index)
    rows = corr[pearson] if pearson.any() else corr
    return rows.iloc[np.argsort(-rows["r"].astype(float).abs().fillna(-1.0).to_numpy(), kind="stable")]


def _summary(study_name: str, table: pd.DataFrame, ranking: pd.DataFrame, excluded: pd.DataFrame) -> dict[str, str]:
    """Headline facts shared by the HTML and markdown reports."""
    facts = {"study": study_name, "rows analysed": str(len(table)), "rows excluded": str(len(excluded))}
    for column, label in (("tokenizer_id", "tokenizers"), ("backbone", "backbones"), ("cfg_scale", "CFG scales")):
        if column in table.columns:
            facts[label] = str(table[column].nunique())
    headline = ranking[ranking["target"] == HEADLINE_TARGET] if "target" in ranking.columns else ranking
    if not headline.empty:  # the largest |r| against gFID (the ranking is by |r|, all runs at their best CFG)
        top = headline.iloc[0]
        facts["strongest perspective"] = f"{top['perspective']} ({top['metric']}, r = {_fmt(top['r'])})"
        if "vs_paper" in headline.columns:
            facts["its direction"] = (f"{top['vs_paper']} (paper: {top['paper_sign']}; CI "
                                      f"[{_fmt(top['ci_low'])}, {_fmt(top['ci_high'])}], tokenizer-level bootstrap)")
    return facts


def _image_tag(path: Path) -> str:
    """An <img> whose source is the file itself, base64-encoded into a data: URI."""
    mime = IMAGE_MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"cannot embed {path.name!r}; allowed suffixes: {sorted(IMAGE_MIME)}")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:{mime};base64,{data}">'


def _details(title: str, count: str, body: str, note: str = "", open_: bool = False) -> str:
    """A full table folded under its title (`open_` unfolds it): the report leads with figures, tables follow."""
    note_html = f'<p class="note">{note}</p>' if note else ""
    return (f"<details{' open' if open_ else ''}><summary><h2>{html.escape(title)}</h2> "
            f'<span class="note">{html.escape(count)}</span></summary>{note_html}{body}</details>')


def _html_section(section: ReportSection) -> str:
    body = _html_table(section.frame, _agreement_style) if len(section.frame) else (
        "" if section.note else '<p class="note">None.</p>')
    return _details(section.title, f"{len(section.frame)} rows", body, html.escape(section.note),
                    open_=not section.collapsed)


def _figure(path: Path, css: str = "") -> str:
    return f'<figure class="{css}">{_image_tag(path)}<figcaption>{html.escape(path.name)}</figcaption></figure>'


def _html_page(title: str, facts: dict[str, str], corr: pd.DataFrame, ranking: pd.DataFrame,
               regressions: pd.DataFrame, figures: Sequence[Path], excluded: pd.DataFrame,
               sections: Sequence[ReportSection], notes: Sequence[str], lead: Sequence[Path]) -> str:
    """The whole report as one HTML document: the answer first (headline facts, the lead figures), then every full
    table folded; every cell escaped, every image inlined."""
    summary = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts.items())
    pngs = [p for p in figures if p.suffix.lower() == ".png"]  # the SVG twins would only repeat them
    lead_html = "".join(_figure(p, "lead") for p in lead if p.suffix.lower() == ".png")
    notes_html = "".join(f'<p class="warn">{html.escape(n)}</p>' for n in notes)
    excluded_html = _html_table(excluded) if len(excluded) else '<p class="note">No trials excluded.</p>'
    corr_note = html.escape("Colour: agreement (green = better latent, better generation). " + CI_NOTE)
    title = html.escape(title)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{CSS}</style></head><body>
<h1>{title}</h1>
<p class="note">{html.escape(R_CONVENTION)} {html.escape(CI_NOTE)}</p>
{notes_html}<section id="answer"><h2>The answer</h2><table>{summary}</table>
{lead_html or '<p class="note">Too few analysed runs for the lead figures.</p>'}</section>
{_details("Perspective ranking", f"{len(ranking)} rows", _html_table(ranking), open_=True)}
{_details("Correlations with the target", f"{len(corr)} rows", _html_table(corr, _agreement_style), corr_note)}
{_details("Joint regressions", f"{len(regressions)} rows", _html_table(regressions),
          "OLS of the target on pairs of metrics; loo_r2 is the exact leave-one-out R² (PRESS).")}
{"".join(_html_section(s) for s in sections)}
{_details("All figures", f"{len(pngs)} figures", "".join(_figure(p) for p in pngs))}
{_details("Excluded trials", f"{len(excluded)} rows", excluded_html, open_=bool(len(excluded)))}
</body></html>
"""


def _markdown(title: str, facts: dict[str, str], corr: pd.DataFrame, ranking: pd.DataFrame,
              regressions: pd.DataFrame, figures: Sequence[Path], excluded: pd.DataFrame,
              sections: Sequence[ReportSection], notes: Sequence[str], lead: Sequence[Path]) -> str:
    """A short summary: headline facts, ranking, the ten strongest correlations and regressions, the first rows of
    each extra section (with its note), exclusions."""
    strongest = _strongest(corr)
    extra = [line for s in sections for line in (f"## {s.title}", "", *([s.note, ""] if s.note else []),
                                                 markdown_table(s.frame.head(10)) if len(s.frame) else
                                                 ("" if s.note else "None."), "")]
    lines = [f"# {title}", "", R_CONVENTION, CI_NOTE, "", *(f"> {n}" for n in notes), "",
             *(f"- **{k}**: {v}" for k, v in facts.items()), "",
             "## Perspective ranking", "", "Ranked by |r|; vs_paper: the metric's direction against the paper's.", "",
             markdown_table(ranking), "",
             "## Strongest correlations (by |r|)", "", markdown_table(strongest.head(10)), "",
             "## Joint regressions (best 10)", "", markdown_table(regressions.head(10)), "", *extra,
             "## Figures", "", *(f"- {p.name}" for p in [*lead, *figures]), "",
             "## Excluded trials", "", markdown_table(excluded) if len(excluded) else "None.", ""]
    return "\n".join(lines)


def write_report(
    out_dir: str | Path,
    study_name: str,
    table: pd.DataFrame,
    corr_df: pd.DataFrame,
    regressions: pd.DataFrame | Sequence[OLSResult],
    figures: Sequence[Path],
    excluded: pd.DataFrame | list[dict],
    ranking: pd.DataFrame | None = None,
    sections: Sequence[ReportSection] = (),
    notes: Sequence[str] = (),
    lead: Sequence[Path] = (),
) -> Path:
    """Write `<out_dir>/report.html` (self-contained) and `<out_dir>/report.md`; returns the HTML path.

    `table` is the analysed (ok) table, `corr_df` comes from `correlate`, `regressions` from `pairwise_joint`
    (or a list of `OLSResult`), `excluded` lists failed/incomplete trials with a `reason` each. `ranking` replaces
    the Pearson perspective ranking of `corr_df` (needed when `corr_df` spans several targets); `sections` add
    tables; `notes` are highlighted warnings at the top (e.g. mixed evaluation cards). `lead` are the figures the
    page opens with (`lead_figures`). The measurement-quality sections (seed-noise ICC, power, chance levels) come
    from `raysweep.analysis.noise`, first among the sections.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    noise = measure_noise(table)  # seed noise, power, chance levels: the measurement section (analysis/noise.py)
    sections, notes = [*(ReportSection(*s) for s in noise.sections()), *sections], [*noise.notes(), *notes]
    excluded_df = _shown(pd.DataFrame(excluded), EXCLUDED_COLUMNS)
    ranking = _ranking(corr_df) if ranking is None else ranking
    parts = (f"raysweep study report: {study_name}", _summary(study_name, table, ranking, excluded_df),
             _shown(corr_df, CORRELATION_SHOWN), ranking, _shown(_regression_frame(regressions), REGRESSION_SHOWN),
             [Path(f) for f in figures], excluded_df, sections, notes, [Path(f) for f in lead])
    html_path = out / "report.html"
    html_path.write_text(_html_page(*parts), encoding="utf-8")
    (out / "report.md").write_text(_markdown(*parts), encoding="utf-8")
    return html_path
