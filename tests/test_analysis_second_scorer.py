"""The report's *Second scorer* section on a hand-made table: each scorer's numbers, the rank agreement of the
scorers over tokenizers (against scipy on the per-tokenizer means), the tokenizers aligned to a scorer's features
flagged beside that scorer, and a skipped scorer's reason from the cards."""
from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats

from raysweep.analysis.validity import second_scorer_section

SKIPPED = "domain-ae:0123456789ab; inception-v3-compat skipped: no weights_path given in evaluation.scorers"


def _table() -> pd.DataFrame:
    """Five tokenizers x two seeds; `vf` aligns to the domain network (its default encoder), `repa-dino` to DINOv2.
    The autoencoder ranks as gFID except that the two best swap."""
    gfid = {"base": 1.0, "vf": 2.0, "lcr": 3.0, "repa-dino": 4.0, "blur": 5.0}
    ae = {"base": 12.0, "vf": 11.0, "lcr": 13.0, "repa-dino": 14.0, "blur": 15.0}
    cluster = {"vf": "vf", "repa-dino": "repa"}
    variant = {"repa-dino": "encoder=dinov2-b,weight=0.5"}
    rows = [{"tokenizer_id": t, "seed": seed, "cluster": cluster.get(t, "baseline"), "variant": variant.get(t, "-"),
             "card.feature_network": "domain", "card.extra_scorers": SKIPPED, "gen/gfid": g + 0.1 * seed,
             "gen/fd_floor": 0.03, "gen/gfid@domain-ae": ae[t] + 0.1 * seed, "gen/fd_floor@domain-ae": 1.2}
            for t, g in gfid.items() for seed in (0, 1)]
    return pd.DataFrame(rows)


def test_second_scorer_numbers_agreement_flags_and_skipped_reason() -> None:
    section = second_scorer_section(_table())
    frame = section.frame.set_index("scorer")
    assert list(frame.index) == ["domain", "domain-ae"]
    assert frame.loc["domain", "aligned_tokenizers"] == "vf"  # beside the network vf aligns to
    assert frame.loc["domain-ae", "aligned_tokenizers"] == "none"
    assert frame.loc["domain-ae", "gfid_median"] == pytest.approx(13.05)
    assert frame.loc["domain-ae", "floor_median"] == pytest.approx(1.2)
    assert frame.loc["domain-ae", "versus"] == "domain" and frame.loc["domain", "versus"] == ""
    rho = stats.spearmanr([1, 2, 3, 4, 5], [12, 11, 13, 14, 15]).statistic
    assert frame.loc["domain-ae", "spearman"] == pytest.approx(rho) and rho == pytest.approx(0.9)
    assert frame.loc["domain-ae", "top3_overlap"] == "3/3" and pd.isna(frame.loc["domain", "spearman"])
    assert "vf align their latents to domain's features" in section.note
    assert "repa-dino align their latents to dinov2-b's features" in section.note  # no scorer of that name
    assert "Scorer inception-v3-compat skipped: no weights_path" in section.note


def test_one_scorer_only_says_so_in_one_line_with_the_reason() -> None:
    section = second_scorer_section(_table().drop(columns=["gen/gfid@domain-ae", "gen/fd_floor@domain-ae"]))
    assert section.frame.empty and "one scorer only" in section.note and "inception-v3-compat skipped" in section.note
    assert "\n" not in section.note
