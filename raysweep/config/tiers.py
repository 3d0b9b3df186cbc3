"""ASHA's tiers of one diffusion trial under multi-fidelity gFID, derived from the study file alone: where the trial
scores its cheap gFID while it trains, so the plan keys it (a run's training key holds what the run measures) and
the trial scores exactly what its key says. Ray Tune's scheduler itself is `search/fidelity.py`.

The trainable reports `TIER_GFID` once per checkpoint (`training_iteration` counts checkpoints), scored with
`tier_samples` samples below the last rung and the full count at it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from raysweep.config.allocation import FidelitySpec


def checkpoint_count(steps: int, every: int) -> int:
    """Checkpoints (Tune reports) of a trial of `steps` training steps checkpointed every `every` steps: ASHA's time
    axis (`training_iteration`)."""
    return max(1, math.ceil(steps / every))


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


@dataclass(frozen=True)
class Tiers:
    """Where one trial under ASHA is scored: the checkpoints (every `every` training steps) that are rungs (`rungs`,
    the last one the full tier, = the trial's checkpoint count) and how many samples score a cheap rung. Scoring
    only at rungs, not at every checkpoint, is what makes the cheap tier cheap; other checkpoints report NaN (ASHA
    reads only its rungs)."""

    rungs: tuple[int, ...]
    cheap_samples: int
    every: int

    @classmethod
    def of(cls, spec: FidelitySpec, steps: int, every: int, full_samples: int) -> Tiers:
        k = checkpoint_count(steps, every)
        return cls(tuple(rungs(spec, k)), tier_samples(spec, 0, k, full_samples), every)

    @property
    def max_iterations(self) -> int:
        return self.rungs[-1]

    def rung(self, iteration: int) -> int | None:
        """The rung (counted from 1) a checkpoint is, or None."""
        return self.rungs.index(iteration) + 1 if iteration in self.rungs else None
