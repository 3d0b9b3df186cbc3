"""Multi-fidelity gFID: every selected diffusion trial starts at a cheap tier (a fraction of its training steps, a
fraction of the evaluation samples); Ray Tune's ASHA promotes the best `1 / reduction_factor` at each rung toward the
full tier and stops the rest. Where a trial is scored (its rungs, `config/tiers.py`) is derived from the study file,
and in the trial's training key; this module is the scheduler.

Whether the cheap tier could be trusted is `analysis.rank_agreement` between the cheap-rung gFIDs and the full-tier
gFIDs of the trials that reached both (`search.report.fidelity_section`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from raysweep.config.allocation import FidelitySpec
from raysweep.config.tiers import grace_period
from raysweep.tracking.keys import TIER_GFID

if TYPE_CHECKING:
    from ray.tune.schedulers import ASHAScheduler


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
