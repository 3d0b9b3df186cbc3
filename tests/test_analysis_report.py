"""Figures are drawn and non-empty; the HTML report is self-contained and lists the excluded trials."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from raysweep import analysis as ra
from raysweep.analysis.report import R_CONVENTION

METRICS = ["latent/velocity/viv", "latent/semantic/lnc@5", "latent/spatial/srss", "latent/smoothness/sec@0.5"]
DIRECTIONS = {"gen/gfid": False, "latent/velocity/viv": False, "latent/semantic/lnc@5": True,
              "latent/spatial/srss": True, "latent/smoothness/sec@0.5": False}
PIXEL_VARIANCE_FLOOR = 1e-3  # a blank canvas has variance 0; axes, text and points push it well above this


def _study(seed: int = 0) -> pd.DataFrame:
    """8 tokenizers x 2 backbones x 2 CFG scales; one failed trial and one finished run without a gFID."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(8):
        quality = rng.normal()
        latent = {"latent/velocity/viv": 1.0 - 0.2 * quality, "latent/semantic/lnc@5": 0.6 + 0.1 * quality,
                  "latent/spatial/srss": 0.2 + 0.05 * rng.normal(),
                  "latent/smoothness/sec@0.5": 0.3 - 0.05 * quality + 0.02 * rng.normal()}
        for backbone in ("sit-b", "ldit-b"):
            for cfg in (1.0, 1.5):
                rows.append({"tokenizer_id": f"tok-{t}", "backbone": backbone, "seed": 0, "cfg_scale": cfg,
                             "family": "conv", "cluster": "repa" if t % 2 else "vf", "variant": str(t),
                             "status": "FINISHED", **latent,
                             "gen/gfid": 20.0 - 4.0 * quality + cfg + rng.normal(scale=0.5)})
    rows.append({**rows[0], "tokenizer_id": "tok-failed-7", "status": "FAILED", "gen/gfid": np.nan})
    rows.append({**rows[1], "tokenizer_id": "tok-nogfid-9", "gen/gfid": np.nan})
    return pd.DataFrame(rows)


def _assert_drawn(path: Path) -> None:
    assert path.suffix == ".png" and path.stat().st_size > 0
    assert mpimg.imread(path).var() > PIXEL_VARIANCE_FLOOR


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], pd.DataFrame]:
    out = tmp_path_factory.mktemp("figs")
    ok, _ = ra.split_excluded(_study())
    corr = ra.correlate(ok, METRICS, DIRECTIONS, n_boot=50)
    t = np.linspace(0.0, 1.0, 11)
    paths = [
        *ra.scatter_grid(ok, METRICS, "gen/gfid", DIRECTIONS, out / "grid.png", svg=True),
        *ra.scatter(ok, "latent/smoothness/sec@0.5", "gen/gfid", DIRECTIONS, out / "sec@0.5"),
        *ra.correlation_bar(corr, out / "bar.png"),
        *ra.heatmap(ok, METRICS, out / "heatmap.png"),
        *ra.bubble(ok, "latent/spatial/srss", "latent/semantic/lnc@5", "gen/gfid", out / "bubble.png"),
        *ra.curve_plot(t, {"plain": 1.0 / (1.0 + t), "aligned": 0.5 / (1.0 + t)}, out / "viv_t.png",
                       "VIV(t)", "t", "VIV"),
    ]
    return out, paths, corr


def test_every_figure_is_written_and_not_blank(drawn: tuple[Path, list[Path], pd.DataFrame]) -> None:
    out, paths, _ = drawn
    names = sorted(p.name for p in paths)
    assert names == sorted(["grid.png", "grid.svg", "sec@0.5.png", "bar.png", "heatmap.png", "bubble.png",
                            "viv_t.png"])
    for path in paths:
        assert path.parent == out and path.exists()
        if path.suffix == ".png":
            _assert_drawn(path)
    assert (out / "grid.svg").read_text().lstrip().startswith("<?xml")


def test_a_thousand_point_scatter_svg_holds_one_image_per_panel_not_a_marker_per_point(tmp_path: Path) -> None:
    """The points are rasterized: the SVG embeds one image for them, its size does not grow with the runs."""
    rng = np.random.default_rng(8)
    sizes, uses = {}, {}
    for n in (100, 1000):
        table = pd.DataFrame({"latent/velocity/viv": rng.random(n), "gen/gfid": rng.random(n),
                              "cluster": rng.choice(["vf", "repa"], n)})
        paths = ra.scatter_grid(table, ["latent/velocity/viv"], "gen/gfid", DIRECTIONS, tmp_path / f"s{n}.png",
                                svg=True)
        text = paths[1].read_text()
        assert text.count("<image") == 1
        sizes[n], uses[n] = len(text), text.count("<use")  # <use>: glyphs and ticks (and markers, if vector)
    assert uses[1000] - uses[100] < 100 and sizes[1000] < 2 * sizes[100]  # a marker per point: +900 <use>
    assert ra.figures.marker_area(50) == ra.figures.MARKER_AREA  # full size up to FULL_MARKERS points
    assert ra.figures.marker_area(400) == pytest.approx(ra.figures.MARKER_AREA / 2)  # then area ~ 1 / sqrt(n)


def test_curve_plot_rejects_mismatched_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        ra.curve_plot(np.arange(3), {"a": np.arange(4)}, tmp_path / "c.png", "t", "x", "y")


def test_report_is_self_contained_and_lists_excluded(
    drawn: tuple[Path, list[Path], pd.DataFrame], tmp_path: Path
) -> None:
    _, paths, corr = drawn
    ok, excluded = ra.split_excluded(_study())
    joint = ra.pairwise_joint(ok, METRICS[:3], "gen/gfid")
    report = ra.write_report(tmp_path, "demo-study", ok, corr, joint, paths, excluded)
    page = report.read_text()
    assert "http://" not in page and "https://" not in page
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith("data:") for s in sources)
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    pngs = [p for p in paths if p.suffix == ".png"]
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(p.read_bytes() for p in pngs)
    assert "<script" not in page and "<link" not in page
    for text in ("tok-failed-7", "status=FAILED", "tok-nogfid-9", "gen/gfid missing", "Perspective ranking"):
        assert text in page
    markdown = (tmp_path / "report.md").read_text()
    assert "tok-failed-7" in markdown and "demo-study" in markdown


def test_report_accepts_ols_results_and_excluded_dicts(tmp_path: Path) -> None:
    ok, _ = ra.split_excluded(_study())
    corr = ra.correlate(ok, METRICS[:2], DIRECTIONS, methods=("spearman",), n_boot=20)
    fit = ra.ols(ok, METRICS[:2], "gen/gfid")
    failed = [{"tokenizer_id": "tok-oom", "status": "FAILED", "reason": "CUDA out of memory"}]
    page = ra.write_report(tmp_path, "s", ok, corr, [fit], [], failed).read_text()
    assert "tok-oom" in page and "CUDA out of memory" in page and " + ".join(METRICS[:2]) in page


def test_report_leads_with_the_answer_then_folds_the_tables(tmp_path: Path) -> None:
    from raysweep.analysis.lead_figures import lead_figures

    ok, excluded = ra.split_excluded(_study())
    best = ra.best_cfg_rows(ok)
    corr = ra.correlate(best, METRICS, DIRECTIONS, n_boot=50)
    ranking = ra.perspective_ranking(corr)
    paper = ra.compare_with_paper(corr, best)
    lead = lead_figures(best, ranking, paper, DIRECTIONS, tmp_path / "figures", svg=True)
    assert [p.name for p in lead.pngs()] == ["lead_ranking.png", "lead_headline.png", "lead_parallel.png"]
    assert {p.suffix for p in lead.ranking} == {".png", ".svg"}
    for png in lead.pngs():
        _assert_drawn(png)
    page = ra.write_report(tmp_path, "demo", best, corr, [], [], excluded, ranking=ranking,
                           lead=lead.pngs()).read_text()
    first_image = page.index("data:image/png;base64,")
    assert base64.b64encode(lead.ranking[0].read_bytes()).decode() == page[first_image:].split('"')[0].split(",")[1]
    # the answer (facts, lead figures), then the full tables, each folded
    assert page.index("The answer") < first_image < page.index("<details")
    # both reports say which way r points (sign-normalised metric: r < 0 is the paper's direction against gFID)
    assert html.escape(R_CONVENTION) in page and R_CONVENTION in (tmp_path / "report.md").read_text()
    folded = re.findall(r"<details[^>]*><summary><h2>([^<]+)</h2>", page)
    assert folded[:3] == ["Perspective ranking", "Correlations with the target", "Joint regressions"]
    assert "Excluded trials" in folded and "All figures" in folded
    assert re.search(r"<details><summary><h2>Correlations with the target</h2> <span class=\"note\">"
                     rf"{len(corr)} rows", page)


def test_lead_figures_need_a_ranking(tmp_path: Path) -> None:
    from raysweep.analysis.lead_figures import lead_figures

    ok, _ = ra.split_excluded(_study())
    empty = pd.DataFrame(columns=["perspective", "metric", "r", "ci_low", "ci_high", "n", "agreement"])
    lead = lead_figures(ok, empty, pd.DataFrame(), DIRECTIONS, tmp_path)
    assert lead.pngs() == [] and not list(tmp_path.iterdir())
