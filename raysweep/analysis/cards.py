"""Evaluation cards: scores are comparable only when they were produced under the same card (issue 8).

Each diffusion run records its evaluation settings (sampler, steps, CFG, samples, reference set, feature network,
precision, ...) as `card.<field>` columns and their hash as `card_hash`. A correlation over rows with different
cards mixes protocols (50 vs 250 steps, 10k vs 50k samples), so the analysis refuses it unless told otherwise, and
says which fields differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

CARD_HASH = "card_hash"
CARD_PREFIX = "card."
NO_CARD = "(none)"  # rows of runs that recorded no card
MISSING = "(missing)"  # a card field a run did not record
REPLICATE_FIELDS = ("seed",)  # fields that differ between replicates of one protocol: never a reason to refuse


@dataclass(frozen=True)
class CardKind:
    """Where one kind of score keeps its card in the tidy table: hash column, field prefix, run-id column."""

    scores: str
    hash_column: str
    prefix: str
    run_column: str


GENERATION = CardKind("generation", CARD_HASH, CARD_PREFIX, "diffusion_run_id")
RECONSTRUCTION = CardKind("reconstruction", "recon_card_hash", "recon_card.", "tokenizer_run_id")


class MixedCardsError(ValueError):
    """Rows with different evaluation cards were to be compared; the message names the differing fields."""


def _hashes(table: pd.DataFrame, kind: CardKind) -> pd.Series:
    if kind.hash_column not in table.columns:
        return pd.Series(NO_CARD, index=table.index)
    return table[kind.hash_column].fillna(NO_CARD).astype(str)


def differing_card_fields(table: pd.DataFrame, kind: CardKind = GENERATION) -> dict[str, list[str]]:
    """`<prefix><field>` -> its distinct values (sorted, as text) for every field not the same on all rows."""
    fields = sorted(c for c in table.columns if isinstance(c, str) and c.startswith(kind.prefix))
    out = {}
    for field in fields:
        values = sorted(set(table[field].map(lambda v: MISSING if pd.isna(v) else str(v))))
        if len(values) > 1:
            out[field] = values
    return out


def card_summary(table: pd.DataFrame, kind: CardKind = GENERATION) -> pd.DataFrame:
    """One row per card hash: the scores it covers, how many rows and runs use it, each differing field's value."""
    differing = list(differing_card_fields(table, kind))
    rows = []
    for card, part in table.groupby(_hashes(table, kind), sort=True):
        values = {f: "; ".join(sorted({MISSING if pd.isna(v) else str(v) for v in part[f]})) for f in differing}
        runs = part[kind.run_column].nunique() if kind.run_column in part.columns else len(part)
        rows.append({"scores": kind.scores, CARD_HASH: card, "rows": len(part), "runs": runs, **values})
    return pd.DataFrame(rows, columns=["scores", CARD_HASH, "rows", "runs", *differing])


def conflicting_card_fields(table: pd.DataFrame, kind: CardKind = GENERATION) -> dict[str, list[str]]:
    """The differing card fields that make scores incomparable (all but `REPLICATE_FIELDS`)."""
    return {f: v for f, v in differing_card_fields(table, kind).items()
            if f.removeprefix(kind.prefix) not in REPLICATE_FIELDS}


def is_mixed(table: pd.DataFrame, kind: CardKind = GENERATION) -> bool:
    """Whether the rows span incomparable cards (see `check_cards`)."""
    recorded = any(isinstance(c, str) and c.startswith(kind.prefix) for c in table.columns)
    return _hashes(table, kind).nunique() > 1 and (bool(conflicting_card_fields(table, kind)) or not recorded)


def check_cards(table: pd.DataFrame, allow_mixed: bool = False, kind: CardKind = GENERATION) -> pd.DataFrame:
    """The card summary of the rows to be analysed; MixedCardsError if they span several cards, unless allowed.

    Cards that differ only in `REPLICATE_FIELDS` (the sampling seed of a replicate) are one protocol. Runs that
    recorded no card count as a card of their own (`(none)`): mixing them with carded runs is refused too, since
    nothing says they were scored the same way; so are different hashes whose fields were not logged.
    """
    summary = card_summary(table, kind)
    if allow_mixed or not is_mixed(table, kind):
        return summary
    differing = conflicting_card_fields(table, kind)
    counts = ", ".join(f"{row[CARD_HASH]} ({row['rows']} rows)" for _, row in summary.iterrows())
    fields = "; ".join(f"{f}: {' | '.join(v)}" for f, v in differing.items()) or (
        f"none of the recorded {kind.prefix}* fields differ (the hashes cover fields not logged as params)")
    raise MixedCardsError(
        f"{kind.scores} scores from {len(summary)} evaluation cards cannot be compared ({kind.hash_column}: "
        f"{counts}); fields that differ: {fields}. Re-evaluate under one card, or analyse them together with "
        "analysis.allow_mixed_cards: true in the study file (--allow-mixed-cards on `raysweep analyze`, "
        "allow_mixed_cards=True in AnalysisOptions).")
