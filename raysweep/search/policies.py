"""Allocation policies replayed on a complete study: each puts the tokenizers into batches of diffusion runs, in
launch order, and sees a tokenizer's gFID only once that batch is paid for (none looks at gFID earlier).

    for policy in policies_for(study):
        batches = policy.order(study, batch=1, seed=3)   # [[row, ...], ...], every tokenizer exactly once

proxy            raysweep's default (`diffusion.allocation: proxy`: the Allocator, calibration then greedy); with a
                 cheap tier its gFID is one more proxy feature, paid for on every tokenizer first, and calibration
                 measures the lowest cheap gFIDs
random           a random order
sort:<feature>   best first by one feature, in its declared direction
calibrate-greedy calibrate k = 4 tokenizers spread over the features, then the lowest predicted gFID (the proxy's
                 mean): the Allocator with `acquisition.rule: greedy`, without the cheap tier
information      the Allocator with `acquisition.rule: information` (the default before the replays of issue 25)
cheap            best first by the cheap-tier gFID, paid for on every tokenizer before the first batch
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from raysweep.config.allocation import GREEDY, BudgetSpec, ProxyAllocation
from raysweep.search.allocation import Allocator
from raysweep.search.replay import ReplayStudy

Batches = list[list[int]]
DEFAULT = "proxy"  # the key raysweep's default policy is reported under, whatever it does inside


@dataclass(frozen=True)
class Policy:
    """`order(study, batch, seed)` -> batches of row indices; `cheap_tier`: pays the study's cheap tier on every
    tokenizer before its first batch (one extra sequential round)."""

    name: str
    order: Callable[[ReplayStudy, int, int], Batches]
    cheap_tier: bool = False


def chunks(order: np.ndarray, batch: int) -> Batches:
    """A fixed order cut into launches of `batch`."""
    rows = [int(i) for i in order]
    return [rows[i:i + batch] for i in range(0, len(rows), batch)]


def proxy_order(study: ReplayStudy, batch: int, seed: int, spec: ProxyAllocation | None = None,
                cheap_tier: bool = False) -> Batches:
    """The Allocator's choices with every result revealed as soon as its batch is launched (budget and stop rule
    off): calibration as one batch, then acquisition batches of `batch`. `cheap_tier`: the study's cheap-tier gFID
    is the proxy's last feature, as a backbone ladder's is (`AllocationGate.build`)."""
    spec = spec or ProxyAllocation()
    spec = spec.model_copy(update={"budget": BudgetSpec(), "stop": spec.stop.model_copy(update={"never": True}),
                                   "acquisition": spec.acquisition.model_copy(update={"batch": batch})})
    features, cheap = study.features, None
    if cheap_tier:
        assert study.cheap is not None, "cheap_tier needs a study with a cheap tier"
        features, cheap = np.column_stack([study.features, study.cheap]), study.features.shape[1]
    allocator = Allocator.create(spec, list(study.ids), features, study.metric, seed=seed, cheap=cheap)
    state = allocator.start()
    out: Batches = []
    while True:
        state, chosen = allocator.propose(state)
        if not chosen:
            return out
        for t in chosen:
            state = allocator.record(state, t, float(study.gfid[allocator.index[t]]))
        out.append([allocator.index[t] for t in chosen])


def random_order(study: ReplayStudy, batch: int, seed: int) -> Batches:
    return chunks(np.random.default_rng([seed, 7]).permutation(len(study.ids)), batch)


def sort_policy(column: int, name: str) -> Policy:
    """Best first by feature `column` in its declared direction (ties by row)."""
    def order(study: ReplayStudy, batch: int, seed: int) -> Batches:
        x = study.features[:, column]
        return chunks(np.argsort(-x if study.better[column] else x, kind="stable"), batch)

    return Policy(f"sort:{name}", order)


def cheap_order(study: ReplayStudy, batch: int, seed: int) -> Batches:
    assert study.cheap is not None, "cheap_order needs a cheap tier"
    return chunks(np.argsort(study.cheap, kind="stable"), batch)


def policies_for(study: ReplayStudy, spec: ProxyAllocation | None = None) -> list[Policy]:
    """Every policy the study allows: the cheap tier only where it has one. `spec`: the study's own allocation
    (default: raysweep's default), which the `proxy` policy replays."""
    spec = spec or ProxyAllocation()
    greedy = spec.model_copy(update={"acquisition": spec.acquisition.model_copy(update={"rule": GREEDY})})
    information = spec.model_copy(update={"acquisition": spec.acquisition.model_copy(update={"rule": "information"})})
    tiered = study.cheap is not None
    out = [Policy(DEFAULT, lambda s, b, seed: proxy_order(s, b, seed, spec, tiered), cheap_tier=tiered),
           Policy("random", random_order), *(sort_policy(i, f) for i, f in enumerate(study.feature_names)),
           Policy("calibrate-greedy", lambda s, b, seed: proxy_order(s, b, seed, greedy)),
           Policy("information", lambda s, b, seed: proxy_order(s, b, seed, information))]
    if tiered:
        out.append(Policy("cheap", cheap_order, cheap_tier=True))
    return out
