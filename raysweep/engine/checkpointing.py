"""Training inside a Tune trial: chunks of steps, each ending in an MLflow history flush and a Tune checkpoint.

A trial restored by Tune (node lost, driver restarted) resumes from its last checkpoint and skips the steps MLflow
already has (a node can die between the history flush and the checkpoint), so the metric history of a restored
trial stays continuous and never duplicated. Each checkpoint also carries the metrics the tracker still buffers (a
tracking server that is down), so a restored trial sends them instead of losing them with its node. A diverged
trial checkpoints its reason instead of its state: Tune's retries (meant for lost nodes) then fail at once
instead of re-training into the same NaN.

In a data-parallel trial (`data_parallel`) the same loop runs on every Ray Train worker: checkpoints go through
Ray Train, only rank 0 attaches its state and has a tracker; all ranks see the same (all-reduced) logs, so they
checkpoint, diverge and stop together.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from raysweep.nn.distributed import in_train_worker, is_chief
from raysweep.tracking import Tracker

STATE_FILE = "state.pt"
DIVERGED = "diverged"
UNSENT = "unsent_metrics"  # the tracker's buffered rows at checkpoint time


class DivergenceError(RuntimeError):
    """The training loss became non-finite; the trial stops and is marked FAILED with this reason."""


class Trainer(Protocol):
    step: int

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _session() -> Any:
    """`ray.train` in a data-parallel trial's workers, else `ray.tune`: both offer report, get_checkpoint and
    Checkpoint (inside Train workers `tune.report` is refused, inside Tune functions `train.report`)."""
    if in_train_worker():
        from ray import train

        return train
    from ray import tune

    return tune


def report(metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
    """`tune.report` (`train.report` in a data-parallel worker), with the trainer state as a checkpoint directory
    when given; only rank 0 attaches it."""
    session = _session()
    if state is None or not is_chief():
        session.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, Path(tmp) / STATE_FILE)
        session.report(metrics, checkpoint=session.Checkpoint.from_directory(tmp))


def restore(trainer: Trainer) -> list[tuple[str, float, int, int]] | None:
    """Load the trial's last Tune checkpoint into the trainer, if there is one (else None); re-raise a recorded
    divergence. Returns the metric rows the tracker had not sent when the checkpoint was taken."""
    checkpoint = _session().get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return load_state(trainer, Path(directory) / STATE_FILE)


def load_state(trainer: Trainer, path: Path) -> list[tuple[str, float, int, int]]:
    """Load a checkpointed trainer state (re-raise a recorded divergence); return its unsent metric rows."""
    state = torch.load(path, weights_only=True)
    if DIVERGED in state:
        raise DivergenceError(state[DIVERGED])
    unsent = state.pop(UNSENT, [])
    trainer.load_state_dict(state)
    return unsent


def train_with_checkpoints(trainer: Trainer, fit: Callable[[int, Callable[[int, dict[str, float]], None]], object],
                           total_steps: int, every: int, tracker: Tracker | None, run_id: str | None,
                           prefix: str = "train/", score: Callable[[], dict[str, float]] | None = None,
                           start: Path | None = None) -> dict[str, float]:
    """Run `fit(n_steps, on_log)` in chunks of `every` steps until `total_steps`; return the last logs.
    `tracker` is None on the non-zero ranks of a data-parallel trial: they log nothing. `score()`, after each
    chunk's history is logged, adds values to that checkpoint's report (what a Tune trial scheduler reads).
    `start`: a state file the trial begins from when it has no checkpoint of its own (a shorter run it continues)."""
    unsent = restore(trainer)
    if unsent is None and start is not None:
        load_state(trainer, start)  # its unsent rows belong to the shorter run, not to this one
    logged = None
    if tracker is not None and run_id is not None:
        if unsent is not None:
            tracker.requeue(run_id, unsent)
        # also without a checkpoint: a driver killed before Tune recorded the trial's first one restarts it from
        # step 0 (seeded, so the same losses), and the steps its run already has are not logged twice
        logged = tracker.last_step(run_id, f"{prefix}loss")
    last: dict[str, float] = {}
    while trainer.step < total_steps:
        history: list[tuple[int, dict[str, float]]] = []
        fit(min(every, total_steps - trainer.step), lambda step, logs: history.append((step, dict(logs))))
        for step, logs in history:
            bad = [k for k, v in logs.items() if not math.isfinite(v)]
            if bad:
                reason = f"non-finite {', '.join(bad)} at step {step}"
                report({"step": step, DIVERGED: 1}, {DIVERGED: reason})
                raise DivergenceError(reason)
        last = history[-1][1] if history else last
        if tracker is None or run_id is None:
            report({"step": trainer.step, **last})  # a data-parallel rank > 0: rank 0 checkpoints the state
            continue
        tracker.log_history(run_id, [(s, {f"{prefix}{k}": v for k, v in logs.items()}) for s, logs in history
                                     if logged is None or s > logged])
        extra = score() if score is not None else {}
        report({"step": trainer.step, **last, **extra}, {**trainer.state_dict(), UNSENT: tracker.unsent(run_id)})
    return last
