"""A longer diffusion run continues a shorter one instead of training again from step 0.

Training is a function of the step alone: a constant learning rate, an EMA decay that depends only on the step, and
one generator whose state is checkpointed (`diffusion/train.py`). So an S'-step run equals the S-step run of the same
training continued from its final state, bit-exact on CPU (`tests/test_diffusion_continuation.py`). When
`diffusion.steps` grows, a diffusion job whose training key is new starts from the final Tune checkpoint of a
finished run whose training inputs differ only by fewer steps, and its MLflow run receives that run's training
history (loss, convergence curve) up to that step. The shorter run is then superseded (`docs/keys.md`).

This holds while training never sees the run's total step count (`DiffusionTrainer` has no such argument; `fit`
takes chunks): a learning-rate schedule over the total steps would have to disable continuation, or it would reuse a
state its inputs no longer describe.

Only a step count that is a multiple of the checkpoint interval qualifies: the curve's checkpoints then fall where the
longer run's would. A data-parallel trial, or one under ASHA, always trains from step 0.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from raysweep.config.plan import STOPPED_RESULT, DiffusionJob, Job
from raysweep.config.spec import StudySpec
from raysweep.engine.checkpointing import STATE_FILE
from raysweep.engine.migrate import MIGRATED_FROM
from raysweep.engine.store import Store
from raysweep.tracking.keys import CHECKPOINT_GFID

CONTINUED_FROM = "continued_from"  # in a continued run's result: the shorter run's key, run and steps
TRAINING_HISTORY = ("train/", CHECKPOINT_GFID)  # what a run logs while it trains: copied onto the continuing run
CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")


@dataclass(frozen=True)
class Continuation:
    """A finished shorter run of the same training: its training key, MLflow run, step count and final state."""

    key: str
    run_id: str
    steps: int
    state_file: Path

    def record(self) -> dict[str, Any]:
        """What the continuing run's result records of it."""
        return {"key": self.key, "run_id": self.run_id, "steps": self.steps}


def find_continuation(job: DiffusionJob, store: Store, every: int,
                      results: Iterable[tuple[str, dict[str, Any]]] | None = None) -> Continuation | None:
    """The longest finished run in `store` that `job` may continue (module docstring), or None. `results`: the
    store's `diffusion_results()`, read once by a caller that asks for many jobs."""
    if job.tiers is not None:
        return None
    found: Continuation | None = None
    for key, result in store.diffusion_results() if results is None else results:
        steps = shorter_by_steps(result.get("inputs"), job.inputs)
        if (steps is None or steps % every or STOPPED_RESULT in result or "run_id" not in result
                or (found is not None and found.steps >= steps)):
            continue
        state = final_state(store, (key, result.get(MIGRATED_FROM)), steps)
        if state is not None:
            found = Continuation(key, result["run_id"], steps, state)
    return found


def continuation_interval(study: StudySpec) -> int | None:
    """The checkpoint grid on which a study's diffusion runs continue shorter ones; None where they never do (its
    trials are data-parallel: each rank would need its own state)."""
    return study.storage.checkpoint_every if study.resources.diffusion.workers == 1 else None


def continued_steps(job: Job, store: Store, every: int | None, results: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """The steps a planned job will not train: those of the run it continues (0 for any other job, and for every
    job where `every`, the study's `continuation_interval`, is None). For status, progress and ETAs."""
    start = (find_continuation(job, store, every, results)
             if isinstance(job, DiffusionJob) and every is not None else None)
    return 0 if start is None else start.steps


def shorter_by_steps(recorded: Any, planned: Mapping[str, Any]) -> int | None:
    """The recorded run's step count when its training inputs equal the planned ones but for fewer steps."""
    trial, planned_trial = (recorded or {}).get("trial"), planned.get("trial")
    if not isinstance(trial, Mapping) or not isinstance(planned_trial, Mapping):
        return None
    steps = trial.get("steps")
    if not isinstance(steps, int) or steps >= planned_trial["steps"]:
        return None
    return steps if {**recorded, "trial": {**trial, "steps": planned_trial["steps"]}} == dict(planned) else None


def final_state(store: Store, keys: tuple[str | None, ...], steps: int) -> Path | None:
    """The trainer state a run of one of `keys` (its key, the key it was migrated from) checkpointed at `steps`: the
    last checkpoint of its Tune experiment, when that one is at `steps`."""
    for key in filter(None, keys):
        checkpoints = sorted((int(m.group(1)), path) for path in store.tune.glob(f"diffusion-{key}/*/checkpoint_*")
                             if (m := CHECKPOINT_DIR.match(path.name)) and (path / STATE_FILE).is_file())
        if checkpoints:
            last = checkpoints[-1][1] / STATE_FILE
            if torch.load(last, weights_only=True, mmap=True).get("step") == steps:
                return last
    return None
