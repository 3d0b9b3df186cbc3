"""Run a list of concrete trial payloads as one Ray Tune experiment, restoring it if a previous run was cut off.

Trials are resolved on the driver (see `raysweep.config.search`), so the Tune param space is a grid over the
resolved payloads. The experiment name is the hash of that list: the same study re-run finds and restores its own
experiment (`Tuner.can_restore`), and finished trials also short-circuit on their store marker, so a lost Tune
directory costs nothing either.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raysweep.config.hashing import config_hash
from raysweep.pipeline.data_parallel import with_resources


def run_trials(name: str, trainable: Callable[[dict[str, Any]], None], payloads: list[dict[str, Any]],
               storage: str, resources: dict[str, float], max_failures: int = 2,
               verbose: int = 1) -> list[dict[str, Any]]:
    """Run every payload as a Tune trial; return one summary per trial (payload id, metrics, error).

    `storage` is a directory (shared on a cluster: NFS) or a pyarrow.fs URI (s3://...). A trial whose node is lost
    is retried up to `max_failures` times from its last checkpoint on another node."""
    from ray import tune

    if not payloads:
        return []
    exp_name = f"{name}-{config_hash(payloads)}"
    path = f"{str(storage).rstrip('/')}/{exp_name}"
    wrapped = with_resources(trainable, resources)  # `workers > 1`: a data-parallel launcher
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=wrapped, resume_errored=True)
    else:
        tuner = tune.Tuner(
            wrapped,
            param_space={"payload": tune.grid_search(payloads)},
            tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False),
            run_config=tune.RunConfig(
                name=exp_name,
                storage_path=str(storage),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=verbose,
            ),
        )
    grid = tuner.fit()
    summaries = []
    for result in grid:
        payload = result.config["payload"]
        summaries.append({
            "id": payload.get("id"),
            "metrics": dict(result.metrics or {}),
            "error": None if result.error is None else f"{type(result.error).__name__}: {result.error}",
        })
    return summaries
