"""Do two lower-is-better scores rank the same tokenizers alike? One definition for every report section that asks
(a second scorer, the sampler check, a cheap tier or backbone against the target)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_TOKENIZERS = 3  # with two, any two rankings have |rho| = 1


@dataclass(frozen=True)
class RankAgreement:
    """Over the `n` tokenizers scored by both: Spearman rho, Kendall tau (NaN under `MIN_TOKENIZERS` or on a constant
    score) and the overlap of the two top-k sets, |top-k(a) ∩ top-k(b)| / k (k = min(top_k, n))."""

    n: int
    spearman: float
    kendall: float
    top_k: int
    top_k_shared: int  # tokenizers in both top-k sets

    @property
    def top_k_overlap(self) -> float:
        return self.top_k_shared / self.top_k if self.top_k else float("nan")

    def columns(self) -> dict[str, object]:
        """The rank-agreement columns a report table shows."""
        return {"spearman": self.spearman, "top_k": self.top_k, "top_k_overlap": self.top_k_overlap}


def rank_agreement(a: Mapping[str, float], b: Mapping[str, float], top_k: int = 3) -> RankAgreement:
    """`a` and `b`: a score per tokenizer id (lower is better); ties in a top-k broken by id."""
    both = sorted(t for t in set(a) & set(b) if np.isfinite(a[t]) and np.isfinite(b[t]))
    x, y = np.array([a[t] for t in both], float), np.array([b[t] for t in both], float)
    k = min(top_k, len(both))
    shared = len(set(np.argsort(x, kind="stable")[:k]) & set(np.argsort(y, kind="stable")[:k]))
    if len(both) < MIN_TOKENIZERS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return RankAgreement(len(both), np.nan, np.nan, k, shared)
    return RankAgreement(len(both), float(stats.spearmanr(x, y).statistic), float(stats.kendalltau(x, y).statistic),
                         k, shared)
