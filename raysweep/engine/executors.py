"""Where a job runs: one interface (`Executor`: submit a `Task`, wait for `Outcome`s), three implementations.

`RayExecutor` runs trials (tokenizers, diffusion models) as Ray Tune trials and metric jobs as Ray tasks.
Each trial job is its own one-trial Tune experiment, `<tune>/<stage>-<key>`, driven by a Ray task pinned to the
driver's node (it asks no CPU; the trial asks the job's resources). Why one experiment per job rather than a
long-lived Tuner fed incrementally:
  * driver-kill resume stays Tune's: a re-run finds the job's experiment (`Tuner.can_restore`) and restores its
    trial from its last checkpoint (`resume_errored`), whatever else the study changed meanwhile; a long-lived
    Tuner would pickle the DAG state (searcher, object refs) with the experiment and restore it stale;
  * node-loss retry stays Tune's: `FailureConfig(max_failures)` restarts the trial from its checkpoint on another
    node, while the Tune driver task itself sits on the driver's node and dies only with the driver;
  * the scheduler, not Tune, decides what runs next, so a job starts as soon as its own inputs exist.
The cost is a Tune start per trial job (about a second), small beside a trial. The one exception is a `Cohort`
(multi-fidelity gFID): trial jobs that only mean something ranked against each other (ASHA promotes the best of
them) run as the trials of one experiment, `<tune>/<stage>-cohort-<hash of their keys>`, restored the same way.
Step events travel from a Tune callback in that task to the driver through a named relay actor (`EventRelay`),
drained while waiting.

`LocalExecutor` runs every task in the calling process at submit time (as submitit's `DebugExecutor`), so
pipeline logic is testable without starting Ray; a trainable's `tune.report` is then a no-op. `TrialExecutor` runs
a sub-plan from inside a Tune trial (a tokenizer search's trial: its tokenizer and metric jobs).
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from raysweep.config.plan import JobRef, Stage
from raysweep.engine.events import JobEvent, JobStep
from raysweep.engine.tune import Cohort, run_cohort, run_trial

Kind = Literal["trial", "task", "driver"]  # a Tune trial | a Ray task | a call in the driver process
RELAY_NAME = "raysweep-event-relay"
RELAY_EVERY_S = 0.5  # while waiting, how often step events are fetched from the relay
TRAINING_METRIC = "loss"  # what trainables report each chunk (checkpointing.train_with_checkpoints)


@dataclass(frozen=True)
class Task:
    """A job made runnable: `fn(*args)` (for a trial: the Tune trainable, `args` its one config dict), the
    resources it holds while it runs (Ray's names: CPU, GPU, custom), what its Ray task itself asks when that
    differs (`ray_resources`: a task whose actors hold the resources asks none), and for trials the Tune
    experiment name and the step count. A `cohort` task runs `fn` once per cohort job and reports an outcome for
    each of its `members` (the refs of the jobs in `cohort.todo`); `resources` are then each trial's."""

    ref: JobRef
    kind: Kind
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    resources: dict[str, float] = field(default_factory=dict)
    ray_resources: dict[str, float] | None = None
    experiment: str = ""
    total_steps: int | None = None
    workers: int = 1  # a trial's data-parallel Ray Train workers (they split `resources`)
    cohort: Cohort | None = None
    members: tuple[JobRef, ...] = ()

    @property
    def refs(self) -> tuple[JobRef, ...]:
        """The jobs this task reports outcomes for."""
        return self.members or (self.ref,)


@dataclass(frozen=True)
class Outcome:
    ref: JobRef
    error: str | None = None  # None: finished (its result is in the store)


class Executor(Protocol):
    def capacity(self) -> dict[str, float]:
        """The resources of everything this executor can run at once (e.g. {"CPU": 16, "GPU": 8})."""
        ...

    def submit(self, task: Task) -> None: ...

    def wait(self, timeout: float) -> list[Outcome]:
        """Outcomes of finished tasks, waiting up to `timeout` s for the first one."""
        ...

    def close(self) -> None: ...


def _error(err: BaseException | str) -> str:
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    return text.splitlines()[0][:500]


class LocalExecutor:
    """Runs each task in this process, when it is submitted; `capacity` is what the scheduler may plan with."""

    def __init__(self, capacity: dict[str, float] | None = None) -> None:
        self._capacity = capacity or {"CPU": 1.0}
        self._done: list[Outcome] = []

    def capacity(self) -> dict[str, float]:
        return dict(self._capacity)

    def submit(self, task: Task) -> None:
        if task.cohort is not None:
            raise ValueError(f"{task.ref}: a cohort runs under a Tune trial scheduler; use the RayExecutor")
        try:
            with warnings.catch_warnings():  # tune.report / get_checkpoint outside Tune: warned no-ops
                warnings.filterwarnings("ignore", message=".*only be called inside.*")
                task.fn(*task.args)
            self._done.append(Outcome(task.ref))
        except Exception as err:
            self._done.append(Outcome(task.ref, _error(err)))

    def wait(self, timeout: float) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        pass


class EventRelay:
    """A small Ray actor: Tune callbacks in the trial-driver tasks put step events, the driver drains them."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    def put(self, event: JobEvent) -> None:
        self.events.append(event)

    def drain(self) -> list[JobEvent]:
        events, self.events = self.events, []
        return events


def relay() -> Any:
    """The driver's event relay, or None where there is none (a study run by in-process executors)."""
    import ray

    try:
        return ray.get_actor(RELAY_NAME)
    except ValueError:
        return None


def step_callback(stage: Stage, total: int | None) -> Any:
    """A Tune callback that relays each reported result of a job's trial (named by the job's id) as a `JobStep`.
    It holds the relay's name, not its handle, so a restored experiment (whose callbacks are unpickled) finds the
    new driver's relay."""
    from ray import tune

    class StepRelay(tune.Callback):
        def __init__(self) -> None:
            self._relay: Any = None

        def __getstate__(self) -> dict[str, Any]:
            return {"_relay": None}

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:

            if self._relay is None:
                self._relay = relay()
                if self._relay is None:
                    return
            value = result.get(TRAINING_METRIC)
            self._relay.put.remote(JobStep(str(trial), stage, step=int(result.get("step", 0)), total=total,
                                           metric=f"train/{TRAINING_METRIC}" if value is not None else None,
                                           value=None if value is None else float(value)))

    return StepRelay()


def run_tune_job(task: Task, storage: str, max_failures: int, verbose: int) -> dict[JobRef, str | None]:
    """Run (or restore) the Tune experiment of a trial job (or of a cohort); -> each job's error (None: finished)."""
    job_stage, job_id = task.ref
    callbacks = [step_callback(job_stage, task.total_steps)]  # type: ignore[arg-type]
    if task.cohort is not None:
        errors = run_cohort(task.experiment, task.fn, task.cohort, storage, task.resources, callbacks=callbacks,
                            max_failures=max_failures, verbose=verbose)
        return {(job_stage, name): error for name, error in errors.items()}
    error = run_trial(task.experiment, task.fn, task.args[0], storage, task.resources, trial_name=job_id,
                      callbacks=callbacks, max_failures=max_failures, verbose=verbose, workers=task.workers)
    return {task.ref: error}


def _call(fn: Callable[..., Any], *args: Any) -> None:
    fn(*args)


class TrialExecutor:
    """Runs each task when it is submitted, from inside a Tune trial that only waits (a search trial, holding a token
    CPU share): trials as their own Tune experiments, tasks as Ray tasks placed outside the trial's placement group
    (Tune's trials capture their child tasks into it). Events go to the driver's relay when there is one."""

    def __init__(self, storage: str, max_failures: int = 2) -> None:
        self.storage, self.max_failures = storage, max_failures
        self._relay = relay()
        self._done: list[Outcome] = []

    def capacity(self) -> dict[str, float]:
        import ray

        return {k: float(v) for k, v in ray.cluster_resources().items() if not k.startswith("node:")}

    def emit(self, event: JobEvent) -> None:
        if self._relay is not None:
            self._relay.put.remote(event)

    def submit(self, task: Task) -> None:
        try:
            if task.kind == "trial":
                errors = run_tune_job(task, self.storage, self.max_failures, verbose=0)
                self._done += [Outcome(ref, error and _error(error)) for ref, error in errors.items()]
                return
            if task.kind == "task":
                _outside_group(task)
            else:
                task.fn(*task.args)
            self._done.append(Outcome(task.ref))
        except Exception as err:  # a RayTaskError wraps the job's own error: report that
            self._done.append(Outcome(task.ref, _error(getattr(err, "cause", None) or err)))

    def wait(self, timeout: float) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        pass


def _outside_group(task: Task) -> None:
    """`task.fn(*task.args)` as a Ray task holding the task's resources, outside the calling trial's placement
    group, waited for."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    res = dict(task.resources if task.ray_resources is None else task.ray_resources)
    ray.get(ray.remote(task.fn).options(num_cpus=res.pop("CPU", 0.0), num_gpus=res.pop("GPU", 0.0), resources=res,
                                        max_retries=0,
                                        # None (Ray's documented way out of the trial's group); the stub wants one
                                        scheduling_strategy=PlacementGroupSchedulingStrategy(
                                            placement_group=None))  # type: ignore[arg-type]
            .remote(*task.args))


class RayExecutor:
    """Trials as one-trial Tune experiments, metric jobs as Ray tasks, on the connected Ray cluster."""

    def __init__(self, storage: str, emit: Callable[[JobEvent], None], max_failures: int = 2,
                 verbose: int = 0) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.storage, self.emit, self.max_failures, self.verbose = storage, emit, max_failures, verbose
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        # on the driver's node: a relay on a worker node dies with it (seen in the node-failure test)
        self._relay_actor = ray.remote(EventRelay).options(name=RELAY_NAME, num_cpus=0, get_if_exists=True,
                                                           scheduling_strategy=here)
        # Any: ray's stubs type the handle as `ActorHandle | type[EventRelay]`, its methods without `.remote`
        self._relay: Any = self._relay_actor.remote()
        # the Tune driver of a trial job: no CPU (its trial holds the resources), on the driver's node
        self._tune = ray.remote(run_tune_job).options(num_cpus=0, scheduling_strategy=here, max_retries=0)
        self._call = ray.remote(_call)  # made once: each `ray.remote` exports the function again
        self._pending: dict[Any, Task] = {}
        self._done: list[Outcome] = []

    def capacity(self) -> dict[str, float]:
        import ray

        return {k: float(v) for k, v in ray.cluster_resources().items() if not k.startswith("node:")}

    def submit(self, task: Task) -> None:

        if task.kind == "driver":
            try:
                task.fn(*task.args)
                self._done.append(Outcome(task.ref))
            except Exception as err:
                self._done.append(Outcome(task.ref, _error(err)))
            return
        if task.kind == "trial":
            ref = self._tune.remote(task, self.storage, self.max_failures, self.verbose)
        else:
            res = dict(task.resources if task.ray_resources is None else task.ray_resources)
            options = {"num_cpus": res.pop("CPU", 0.0), "num_gpus": res.pop("GPU", 0.0), "resources": res,
                       "max_retries": self.max_failures, "retry_exceptions": False}
            ref = self._call.options(**options).remote(task.fn, *task.args)
        self._pending[ref] = task

    def wait(self, timeout: float) -> list[Outcome]:
        import ray

        deadline = time.monotonic() + timeout
        while not self._done and self._pending:
            pending = list(self._pending)
            ready, _ = ray.wait(pending, num_returns=1, timeout=RELAY_EVERY_S, fetch_local=False)
            if ready:  # and every other one already done
                ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0, fetch_local=False)
            self._relay_events()
            for ref in ready:
                task = self._pending.pop(ref)
                try:
                    errors = ray.get(ref) if task.kind == "trial" else {task.ref: None}
                    self._done += [Outcome(job, (failure := errors[job]) and _error(failure)) for job in task.refs]
                except Exception as err:  # a RayTaskError wraps the job's own error: report that
                    cause = getattr(err, "cause", None) or err
                    self._done += [Outcome(job, _error(cause)) for job in task.refs]
            if time.monotonic() > deadline:
                break
        self._relay_events()
        done, self._done = self._done, []
        return done

    def _relay_events(self) -> None:
        """Forward the trials' step events. Progress is best-effort: a relay that is gone (its node lost) is made
        anew and the steps it held are dropped; the jobs' outcomes never depend on it."""
        import ray
        from ray.exceptions import RayActorError

        try:
            events = ray.get(self._relay.drain.remote())
        except RayActorError:  # ActorDiedError, ActorUnavailableError
            self._relay = self._relay_actor.remote()
            return
        for event in events:
            self.emit(event)

    def close(self) -> None:
        import ray

        ray.kill(self._relay)
