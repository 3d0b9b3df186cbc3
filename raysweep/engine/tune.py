"""Run one trial job as a one-trial Ray Tune experiment, restoring it if a previous run was cut off.

The experiment's name is the job's stage and content key (`tokenizers-<key>`, `diffusion-<key>`): the same job
re-run finds and restores its own experiment (`Tuner.can_restore`), and resumes from its last checkpoint; a finished
trial also short-circuits on its store marker, so a lost Tune directory costs nothing either. The trial is named by
the job's study id (`vf/SiT-T/0`; its directory `vf_SiT-T_0`).

A `Cohort` (multi-fidelity gFID) is the same with several trials, one per job, under a Tune trial
scheduler (ASHA). Tune does not save a trial scheduler's state with the experiment, so a restored cohort's ASHA
starts from the trials' tracked rung values (`Cohort.scheduler` is built with them).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raysweep.engine.data_parallel import with_resources

MEMBER = "member"  # a cohort trial's config: the index of its job in the cohort


@dataclass(frozen=True)
class Cohort:
    """Trial jobs run as the trials of one Tune experiment under a Tune trial `scheduler` (ASHA), which decides
    which of them train to the end. `names` and `configs` are every job of the cohort in a fixed order (the
    experiment's trial i is job i, so a restored experiment finds its jobs again); `todo` the indices a fresh
    experiment runs (jobs finished earlier are not run again). After the experiment, `settle(config, result)` runs
    for every trial that ended without an error (`result`: its last reported metrics): it records a trial the
    scheduler stopped as a finished job of its stage, and leaves one that finished by itself as it is."""

    names: tuple[str, ...]
    configs: tuple[dict[str, Any], ...]
    todo: tuple[int, ...]
    scheduler: Any
    settle: Callable[[dict[str, Any], dict[str, Any]], None]


def run_trial(name: str, trainable: Callable[[dict[str, Any]], None], config: dict[str, Any], storage: str,
              resources: dict[str, float], trial_name: str, callbacks: list[Any] | None = None,
              max_failures: int = 2, verbose: int = 0, workers: int = 1) -> str | None:
    """Run `trainable(config)` as the experiment's trial; return its error (None: finished).

    `storage` is a directory (shared on a cluster: NFS) or a pyarrow.fs URI (s3://...). A trial whose node is lost
    is retried up to `max_failures` times from its last checkpoint on another node. `resources` are Ray's
    ({"CPU": 1, "GPU": 1, custom...}), the trial's totals: `workers > 1` runs it on that many Ray Train workers
    (`engine/data_parallel.py`)."""

    wrapped = with_resources(trainable, resources, workers)  # `workers > 1`: a data-parallel launcher
    tuner = _tuner(name, wrapped, config, storage, lambda _: trial_name, None, callbacks, max_failures, verbose)
    return _error(tuner.fit()[0].error)


def run_cohort(name: str, trainable: Callable[[dict[str, Any]], None], cohort: Cohort, storage: str,
               resources: dict[str, float], callbacks: list[Any] | None = None, max_failures: int = 2,
               verbose: int = 0) -> dict[str, str | None]:
    """Run (or restore) a cohort's experiment: trial i is job `cohort.names[i]` on `cohort.configs[i]`, each
    holding `resources`, under `cohort.scheduler`; settle every trial that ended without an error. -> each job of
    `cohort.todo` by name: its error (None: finished by itself, or stopped by the scheduler and settled)."""
    from ray import tune

    configs, names = list(cohort.configs), cohort.names
    member = tune.with_parameters(_member_trial, stage_fn=trainable, configs=configs)
    tuner = _tuner(name, with_resources(member, resources), {MEMBER: tune.grid_search(list(cohort.todo))},
                   storage, lambda trial: names[trial.config[MEMBER]], cohort.scheduler, callbacks, max_failures,
                   verbose)
    errors: dict[str, str | None] = {}
    for result in tuner.fit():
        i = result.config[MEMBER]
        errors[names[i]] = _error(result.error)
        if result.error is None:
            try:
                cohort.settle(configs[i], result.metrics)
            except Exception as err:  # this job's outcome, not its cohort's
                errors[names[i]] = _error(err)
    return {names[i]: errors.get(names[i], "not run by its cohort's Tune experiment") for i in cohort.todo}


def _member_trial(config: dict[str, Any], stage_fn: Callable[[dict[str, Any]], None],
                  configs: list[dict[str, Any]]) -> None:
    """A cohort trial: the stage trainable on its job's config (the trial's own config is only the job's index,
    so the experiment state stays small and names its jobs)."""
    stage_fn(configs[config[MEMBER]])


def _tuner(name: str, wrapped: Any, param_space: dict[str, Any], storage: str, trial_name: Callable[[Any], str],
           scheduler: Any, callbacks: list[Any] | None, max_failures: int, verbose: int) -> Any:
    """The experiment `name` under `storage`: restored when a previous run left it there, else a new one."""
    from ray import tune

    path = f"{str(storage).rstrip('/')}/{name}"
    if tune.Tuner.can_restore(path):  # tuner.pkl leaves the param space out: a driver killed before the trial was
        # created would restore it with an empty config (a KeyError on the stage's typed input), so it is given again
        return tune.Tuner.restore(path, trainable=wrapped, resume_errored=True, param_space=param_space)
    return tune.Tuner(
        wrapped,
        param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False, scheduler=scheduler,
                                    trial_name_creator=trial_name,
                                    trial_dirname_creator=lambda trial: trial_name(trial).replace("/", "_")),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            verbose=verbose,
        ),
    )


def _error(error: BaseException | None) -> str | None:
    if error is None:
        return None
    cause = getattr(error, "cause", None) or error  # a RayTaskError wraps the trainable's own exception
    return f"{type(cause).__name__}: {cause}"
