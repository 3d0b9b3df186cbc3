"""Multi-fidelity gFID: every selected diffusion trial starts at a cheap tier (a fraction of its training steps, a
fraction of the evaluation samples); Ray Tune's ASHA promotes the best `1 / reduction_factor` at each rung toward the
full tier and stops the rest. The trainable reports `TIER_GFID` once per checkpoint (`training_iteration` counts
checkpoints), scored with `tier_samples` samples below the last rung and the full count at it.

`tier_agreement` tells the reader whether the cheap tier could be trusted: Spearman rank correlation and top-k overlap
between the cheap-rung gFIDs and the full-tier gFIDs of the trials that reached both.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from raysweep.config.allocation import FidelitySpec

if TYPE_CHECKING:
    from ray.tune.schedulers import ASHAScheduler

TIER_GFID = "tier/gfid"  # gFID at a rung, as reported to Tune (a cheap-tier value is never logged as gen/gfid)


def grace_period(spec: FidelitySpec, max_iterations: int) -> int:
    """The cheap rung, in checkpoints: `grace_fraction` of the full training, at least 1."""
    return max(1, min(max_iterations, round(spec.grace_fraction * max_iterations)))


def rungs(spec: FidelitySpec, max_iterations: int) -> list[int]:
    """Checkpoint counts at which ASHA decides: grace · eta^i below `max_iterations`, then the full tier."""
    out, r = [], grace_period(spec, max_iterations)
    while r < max_iterations:
        out.append(r)
        r *= spec.reduction_factor
    return [*out, max_iterations]


def tier_samples(spec: FidelitySpec, iteration: int, max_iterations: int, full_samples: int) -> int:
    """Evaluation samples at a checkpoint: the full count at the full tier, `sample_fraction` of it below."""
    return full_samples if iteration >= max_iterations else max(1, round(spec.sample_fraction * full_samples))


def asha_scheduler(spec: FidelitySpec, max_iterations: int, metric: str = TIER_GFID) -> ASHAScheduler:
    """ASHA on gFID (lower is better) at checkpoints; pass it as `TuneConfig(scheduler=...)`."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", metric=metric, mode="min", max_t=max_iterations,
                         grace_period=grace_period(spec, max_iterations), reduction_factor=spec.reduction_factor)


@dataclass(frozen=True)
class TierAgreement:
    """Rank agreement of cheap-tier and full-tier gFID over the `n` trials that have both."""

    n: int
    spearman: float
    top_k: int
    top_k_overlap: float  # |top-k(cheap) ∩ top-k(full)| / k


def tier_agreement(cheap: Mapping[str, float], full: Mapping[str, float], top_k: int = 3) -> TierAgreement:
    both = sorted(set(cheap) & set(full))
    if len(both) < 2:
        return TierAgreement(len(both), np.nan, top_k, np.nan)
    c = np.array([cheap[t] for t in both])
    f = np.array([full[t] for t in both])
    k = min(top_k, len(both))
    overlap = len(set(np.argsort(c, kind="stable")[:k]) & set(np.argsort(f, kind="stable")[:k])) / k
    return TierAgreement(len(both), float(stats.spearmanr(c, f)[0]), k, overlap)
