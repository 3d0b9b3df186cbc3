"""The paper comparison: each item takes our strongest (|r|) metric of its family, reversed or not; unmeasured items
stay listed."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysweep.analysis import compare_with_paper, format_comparison, ols


def _corr(rows: list[tuple[str, float]]) -> pd.DataFrame:
    """Pearson rows against gFID (lower is better), so agreement = -r."""
    return pd.DataFrame([{"metric": m, "method": "pearson", "r": r, "ci_low": r - 0.1, "ci_high": r + 0.1, "n": 8,
                          "agreement": -r} for m, r in rows])


def test_best_member_of_each_family_and_the_joint_r2() -> None:
    rng = np.random.default_rng(0)
    best = pd.DataFrame({"latent/spatial/srss": rng.normal(size=8), "latent/semantic/lnc@10": rng.normal(size=8)})
    best["gen/gfid"] = 3.0 - best["latent/spatial/srss"] - 2.0 * best["latent/semantic/lnc@10"] + 0.3 * rng.normal(
        size=8)
    corr = _corr([("latent/semantic/lnc@5", -0.5), ("latent/semantic/lnc@10", -0.8), ("latent/spatial/srss", -0.6),
                  ("latent/velocity/viv_classes_skipped", 0.9), ("latent/smoothness/sec@0.25", 0.5),
                  ("latent/smoothness/sec@0.5", -0.3)])
    table = compare_with_paper(corr, best).set_index("item")
    assert table.loc["semantic (LNC)", "metric"] == "latent/semantic/lnc@10"
    assert table.loc["semantic (LNC)", ["paper", "ours"]].tolist() == [-0.79, -0.8]
    assert table.loc["SEC", "metric"] == "latent/smoothness/sec@0.25"  # reversed but stronger: shown, not hidden
    assert np.isnan(table.loc["VIV", "ours"]) and table.loc["VIV", "metric"] == ""  # viv_classes_skipped is not VIV
    joint = table.loc["joint OLS R² (SRSS + LNC)"]
    expected = ols(best, ["latent/spatial/srss", "latent/semantic/lnc@10"], "gen/gfid").r2
    assert joint["paper"] == 0.91 and joint["ours"] == pytest.approx(expected)
    text = format_comparison(table.reset_index())
    assert "n/a" in text and "latent/semantic/lnc@10" in text and len(text.splitlines()) == len(table) + 1
