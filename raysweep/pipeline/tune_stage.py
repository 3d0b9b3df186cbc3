"""Run one trial job as a one-trial Ray Tune experiment, restoring it if a previous run was cut off.

The experiment's name is the job's stage and content key (`tokenizers-<key>`, `diffusion-<key>`): the same job
re-run finds and restores its own experiment (`Tuner.can_restore`), and resumes from its last checkpoint; a finished
trial also short-circuits on its store marker, so a lost Tune directory costs nothing either. The trial is named by
the job's study id (`vf/SiT-T/0`; its directory `vf_SiT-T_0`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raysweep.pipeline.data_parallel import with_resources


def run_trial(name: str, trainable: Callable[[dict[str, Any]], None], config: dict[str, Any], storage: str,
              resources: dict[str, float], trial_name: str, callbacks: list[Any] | None = None,
              max_failures: int = 2, verbose: int = 0, workers: int = 1) -> str | None:
    """Run `trainable(config)` as the experiment's trial; return its error (None: finished).

    `storage` is a directory (shared on a cluster: NFS) or a pyarrow.fs URI (s3://...). A trial whose node is lost
    is retried up to `max_failures` times from its last checkpoint on another node. `resources` are Ray's
    ({"CPU": 1, "GPU": 1, custom...}), the trial's totals: `workers > 1` runs it on that many Ray Train workers
    (`pipeline/data_parallel.py`)."""
    from ray import tune

    path = f"{str(storage).rstrip('/')}/{name}"
    wrapped = with_resources(trainable, resources, workers)  # `workers > 1`: a data-parallel launcher
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=wrapped, resume_errored=True)
    else:
        tuner = tune.Tuner(
            wrapped,
            param_space=config,
            tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False,
                                        trial_name_creator=lambda _: trial_name,
                                        trial_dirname_creator=lambda _: trial_name.replace("/", "_")),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=callbacks,
                verbose=verbose,
            ),
        )
    error = tuner.fit()[0].error
    if error is None:
        return None
    cause = getattr(error, "cause", None) or error  # a RayTaskError wraps the trainable's own exception
    return f"{type(cause).__name__}: {cause}"
