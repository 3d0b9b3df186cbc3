"""The reversal experiments' core on hand-built tables whose relations are known by construction."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from raysweep.analysis.reversal import budget_response, relation_across_scores, score_columns

VIV = "latent/velocity/viv"
DIRECTIONS = {VIV: False, "gen/gfid": False}


def _table() -> pd.DataFrame:
    """6 tokenizers x 2 replicates. gFID rises with VIV (the paper's direction), the Euler-20 re-sample falls with
    it (a reversal), the curve at step 600 is flat + the final gFID x 2 for the low-VIV tokenizers (they improve
    most)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        viv = 0.3 + 0.1 * i
        for rep in (0, 1):
            gfid = 5 + 10 * viv + 0.05 * rng.standard_normal()
            rows.append({"tokenizer_id": f"t{i}", "tokenizer_seed": rep, "backbone": "SiT-T", "seed": 0, VIV: viv,
                         "gen/gfid": gfid, "gen/sampler/gfid@euler20": 20 - 10 * viv + 0.05 * rep,
                         "conv/gfid@600": gfid * (2.0 - i / 6), "conv/gfid@1200": gfid})
    return pd.DataFrame(rows)


def test_each_score_gets_its_relation_and_ranking_agreement() -> None:
    table = _table()
    assert score_columns(table) == ["gen/gfid", "gen/sampler/gfid@euler20", "conv/gfid@600", "conv/gfid@1200"]
    out = relation_across_scores(table, VIV, DIRECTIONS, n_boot=200).set_index("score")
    # the sign-normalised VIV (-VIV) against gFID: r < 0 is the paper's direction
    assert out.loc["gen/gfid", "r"] == pytest.approx(stats.pearsonr(-table[VIV], table["gen/gfid"]).statistic)
    assert bool(out.loc["gen/gfid", "agrees_with_paper"]) and not bool(out.loc["gen/sampler/gfid@euler20",
                                                                               "agrees_with_paper"])
    assert out.loc["gen/sampler/gfid@euler20", "rank_spearman_vs_gfid"] == pytest.approx(-1.0)
    assert out.loc["conv/gfid@1200", "rank_spearman_vs_gfid"] == pytest.approx(1.0)
    assert (out["tokenizers"] == 6).all()
    assert (out["ci_low"] <= out["r"]).all() and (out["r"] <= out["ci_high"]).all()


def test_budget_response_says_which_tokenizers_improve_fastest() -> None:
    means, rho = budget_response(_table(), VIV, DIRECTIONS)
    assert list(means["tokenizer_id"]) == [f"t{i}" for i in range(6)]
    expected = 1 - 1 / (2.0 - np.arange(6) / 6)  # (g600 - g1200) / g600
    assert means["improvement"].to_numpy() == pytest.approx(expected)
    assert rho == pytest.approx(1.0)  # a better (lower-VIV) latent improves more
    assert budget_response(_table().drop(columns=["conv/gfid@600", "conv/gfid@1200"]), VIV, DIRECTIONS)[0].empty
