"""Multi-fidelity gFID: every selected diffusion trial starts at a cheap tier (a fraction of its training steps, a
fraction of the evaluation samples); Ray Tune's ASHA promotes the best `1 / reduction_factor` at each rung toward the
full tier and stops the rest. The trainable reports `TIER_GFID` once per checkpoint (`training_iteration` counts
checkpoints), scored with `tier_samples` samples below the last rung and the full count at it.

Whether the cheap tier could be trusted is `analysis.rank_agreement` between the cheap-rung gFIDs and the full-tier
gFIDs of the trials that reached both (`search.report.fidelity_section`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raysweep.config.allocation import FidelitySpec
from raysweep.tracking.keys import TIER_GFID

if TYPE_CHECKING:
    from ray.tune.schedulers import ASHAScheduler


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


def asha_scheduler(spec: FidelitySpec, max_iterations: int, metric: str = TIER_GFID,
                   recorded: Callable[[], Mapping[str, Mapping[int, float]]] | None = None) -> ASHAScheduler:
    """ASHA on gFID (lower is better) at checkpoints; pass it as `TuneConfig(scheduler=...)`. `recorded()`: trial
    name -> {rung checkpoint: gFID} reported so far (the tracked values). Tune restores an experiment's trials but
    not their scheduler's rung records, and a restored experiment keeps the scheduler it was created with (pickled
    before any trial ran), so the records are read when trials are added, not when the scheduler is built:
    without them a resumed trial would be compared with nobody and promoted."""
    from ray.tune.schedulers import ASHAScheduler

    class RecordedASHA(ASHAScheduler):
        """Each rung's records start with the `recorded()` values: a trial in the experiment is recorded (as
        passed) at the rungs it reported before the restart, under its id, so it is not judged there again; a trial
        not in the experiment (finished before a lost Tune directory) under its name, as a value to compare with."""

        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            super().on_trial_add(tune_controller, trial)
            if recorded is None:
                return
            added = self.__dict__.setdefault("_recorded_added", set())
            added.add(str(trial))
            reached = trial.run_metadata.last_result.get("training_iteration", 0)  # 0 unless restored
            values = recorded()
            for milestone, rung in self._trial_info[trial.trial_id]._rungs:  # ASHA's own (milestone, records)
                for name, by_rung in values.items():
                    if milestone not in by_rung:
                        continue
                    if name == str(trial):
                        rung.pop(name, None)
                        if milestone <= reached:
                            rung[trial.trial_id] = -by_rung[milestone]  # ASHA records -gFID (mode min)
                    elif name not in added:
                        rung.setdefault(name, -by_rung[milestone])

    return RecordedASHA(time_attr="training_iteration", metric=metric, mode="min", max_t=max_iterations,
                        grace_period=grace_period(spec, max_iterations), reduction_factor=spec.reduction_factor)


@dataclass(frozen=True)
class Tiers:
    """Where one trial under ASHA is scored: the checkpoints that are rungs (`rungs`, the last one the full tier,
    = the trial's checkpoint count) and how many samples score a cheap rung. Scoring only at rungs, not at every
    checkpoint, is what makes the cheap tier cheap; other checkpoints report NaN (ASHA reads only its rungs)."""

    rungs: tuple[int, ...]
    cheap_samples: int

    @classmethod
    def of(cls, spec: FidelitySpec, steps: int, every: int, full_samples: int) -> Tiers:
        k = checkpoint_count(steps, every)
        return cls(tuple(rungs(spec, k)), tier_samples(spec, 0, k, full_samples))

    @property
    def max_iterations(self) -> int:
        return self.rungs[-1]

    def rung(self, iteration: int) -> int | None:
        """The rung (counted from 1) a checkpoint is, or None."""
        return self.rungs.index(iteration) + 1 if iteration in self.rungs else None
