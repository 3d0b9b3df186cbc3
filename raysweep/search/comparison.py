"""How much diffusion compute each allocation policy needs before a study's answer is right (`raysweep replay`).

    studies = [subsample(study, 0.8, np.random.default_rng(i)) for i in range(20)]     # or synthetic draws
    result = compare(studies, policies_for(study), batch=1)
    result.as_json()   # {"policies": {"proxy": {"top1_fraction": ...}, ...}, "default": "proxy", "reference": ...}

Per replay and policy, after each batch: the spend so far as a fraction of brute-force diffusion compute (every
tokenizer's cost; a cheap tier's runs count too, `cheap_cost` x a tokenizer's cost each), whether the true best
tokenizer of that replay's study has been measured, and the metric-gFID Pearson r on the measured rows. A policy's
`top1_fraction` is the spend by which >= 90 % of replays have measured the true top-1 (the 90th percentile of the
per-replay spends; 1.0 when that needs every tokenizer, and capped at 1.0: brute force alone answers);
`r_fraction` the same for r staying within 0.1 of the complete study's r from then on; `top1_rounds` the sequential
batches (wall time) at the same percentile; `top1_share_total` the share of the whole study's compute
(`tokenizer_cost` per tokenizer for training and metrics, paid in every arm).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from raysweep.search.policies import DEFAULT, Batches, Policy
from raysweep.search.replay import ReplayStudy

TARGET = 0.9       # fraction of replays that must have the answer
R_TOLERANCE = 0.1  # |r on measured rows - r of the complete study|
CHEAP_COST = 0.2   # a cheap-tier run's cost over a full one (a smaller backbone: about a fifth per step)


@dataclass(frozen=True)
class Outcome:
    """One replay of one policy: spends (fractions of brute-force diffusion) and sequential rounds."""

    top1_spend: float
    top1_rounds: int
    r_spend: float
    share_total: float


@dataclass(frozen=True)
class PolicyResult:
    top1_fraction: float
    r_fraction: float
    top1_rounds: int
    top1_share_total: float


@dataclass(frozen=True)
class Comparison:
    case: str
    n_tokenizers: int
    replays: int
    batch: int
    true_r: float
    policies: dict[str, PolicyResult]
    reference: dict[str, PolicyResult]

    @property
    def best(self) -> str:
        """The policy with the lowest top1_fraction (ties: the earlier listed)."""
        return min(self.policies, key=lambda name: self.policies[name].top1_fraction)

    def as_json(self) -> dict[str, object]:
        return {"case": self.case, "n_tokenizers": self.n_tokenizers, "replays": self.replays, "batch": self.batch,
                "true_r": self.true_r, "default": DEFAULT, "best": self.best,
                "policies": {k: asdict(v) for k, v in self.policies.items()},
                "reference": {k: asdict(v) for k, v in self.reference.items()}}


def _r(metric: np.ndarray, gfid: np.ndarray) -> float:
    return float(np.corrcoef(metric, gfid)[0, 1]) if len(gfid) > 2 and np.ptp(gfid) > 0 and np.ptp(metric) > 0 \
        else float("nan")


def outcome(study: ReplayStudy, batches: Batches, cheap_cost: float = 0.0, tokenizer_cost: float = 0.0) -> Outcome:
    """Score one policy's batches on one study (`cheap_cost` > 0: a cheap tier paid first, one round)."""
    cost = study.costs
    brute = float(cost.sum())
    spent = cheap_cost * brute
    offset = int(cheap_cost > 0)
    best, true_r = int(np.argmin(study.gfid)), study.true_r
    seen: list[int] = []
    top1 = None
    r_ok_from = None
    for k, chosen in enumerate(batches, start=1):
        seen += chosen
        spent += float(cost[chosen].sum())
        if top1 is None and best in chosen:
            top1 = (spent, k + offset)
        within = abs(_r(study.metric[seen], study.gfid[seen]) - true_r) <= R_TOLERANCE
        r_ok_from = (r_ok_from or spent) if within else None
    if top1 is None or sorted(seen) != list(range(len(study.ids))):
        raise ValueError(f"{study.name}: a policy must measure every tokenizer exactly once")
    fixed = tokenizer_cost * len(study.ids)
    return Outcome(min(1.0, top1[0] / brute), top1[1], min(1.0, (r_ok_from or brute) / brute),
                   min(1.0, (fixed + top1[0]) / (fixed + brute)))


def _at_target(values: Sequence[float]) -> float:
    """The smallest value by which at least TARGET of the replays are done."""
    ordered = np.sort(np.asarray(values, dtype=float))
    return float(ordered[int(np.ceil(TARGET * len(ordered))) - 1])


def summarise(outcomes: Sequence[Outcome]) -> PolicyResult:
    return PolicyResult(_at_target([o.top1_spend for o in outcomes]), _at_target([o.r_spend for o in outcomes]),
                        int(_at_target([o.top1_rounds for o in outcomes])),
                        _at_target([o.share_total for o in outcomes]))


def compare(studies: Sequence[ReplayStudy], policies: Sequence[Policy], batch: int = 1,
            cheap_cost: float = CHEAP_COST, tokenizer_cost: float = 0.0, case: str | None = None) -> Comparison:
    """Every policy on every replay study (replay i uses seed i); oracle (measure only the best) and brute force
    as reference lines outside `policies`."""
    if not studies or batch < 1:
        raise ValueError(f"compare needs at least one study and batch >= 1, got {len(studies)} and {batch}")
    results = {}
    for policy in policies:
        paid = cheap_cost if policy.cheap_tier else 0.0
        results[policy.name] = summarise([outcome(s, policy.order(s, batch, seed), paid, tokenizer_cost)
                                          for seed, s in enumerate(studies)])
    oracle = summarise([outcome(s, [[int(np.argmin(s.gfid))], *([i] for i in range(len(s.ids))
                                                                 if i != int(np.argmin(s.gfid)))],
                                tokenizer_cost=tokenizer_cost) for s in studies])
    brute = PolicyResult(1.0, 1.0, 1, 1.0)
    return Comparison(case or studies[0].name, int(np.median([len(s.ids) for s in studies])), len(studies), batch,
                      float(np.mean([s.true_r for s in studies])), results,
                      {"oracle_top1": oracle, "brute_force": brute})
