"""Data-parallel trials: a Tune trial whose resources say `workers: N > 1` trains on N Ray Train workers.

The Tune + Train pattern of Ray >= 2.51 (Train V2): the Tune trial is a light launcher that builds a
`TorchTrainer` and waits for it; every Train worker runs the stage's own trial function. Inside the workers
`torch.distributed` is up (gloo on CPU, NCCL on GPUs), and that is what the rest of raysweep keys on
(`raysweep.nn.distributed`, plain torch):

- `current_shard()` gives a rank its slice of every global batch. All ranks draw the same global indices and noise
  from the same seeded generator and compute their slice, so the union of the shards is the single-process step
  (DDP averages the gradients of equal-sized shards = the gradient of the global mean loss).
- `checkpointing.report` / `restore` talk to Ray Train instead of Tune (`in_train_worker()`); only rank 0 attaches
  the trainer state, logs to MLflow and evaluates; the other ranks train, checkpoint in step and report nothing else.
- The Train run lives in the Tune trial's own directory (`train/`), so a Tune retry or a restored study relaunches
  it there and Ray Train resumes every worker from its latest checkpoint; Train itself does not retry (Tune does).

When the TorchTrainer returns, the launcher calls the trial function once more: the trial is then done in the store
and that call reports the stored metrics to Tune, exactly as a re-run of a finished trial does.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Trainable = Callable[[dict[str, Any]], None]
LAUNCHER_CPU = 0.01  # a token share: the launcher only waits on its TorchTrainer, whose workers hold the resources
TRAIN_DIR = "train"  # the Train run's name inside the Tune trial directory


@dataclass(frozen=True)
class Scaling:
    """One data-parallel trial: `workers` ranks, each with `cpu` CPUs and `gpu` GPUs; `backend` of the process
    group (None: NCCL when the workers have GPUs, else gloo; NCCL refuses two ranks on one device). Ray Train makes
    each worker's GPU its current CUDA device, so `torch.device("cuda")` in a worker is its own GPU."""

    workers: int
    cpu: float
    gpu: float
    backend: str | None = None

    @classmethod
    def of(cls, resources: dict[str, float], workers: int) -> Scaling:
        """From a trial's Ray resources (its totals, {"CPU": 16, "GPU": 8}) split evenly over `workers`."""
        return cls(workers, float(resources.get("CPU", 1.0)) / workers, float(resources.get("GPU", 0.0)) / workers)


def with_resources(trainable: Trainable, resources: dict[str, float], workers: int = 1) -> Any:
    """`tune.with_resources` for a stage trainable holding Ray `resources` (the trial's totals: {"CPU": 1, "GPU":
    1, custom...}); `workers > 1` turns it into a data-parallel launcher whose Train workers split them."""
    from ray import tune

    if workers == 1:
        return tune.with_resources(trainable, tune.PlacementGroupFactory([resources]))
    scaling = Scaling.of(resources, workers)
    launcher = tune.with_parameters(launch, stage_fn=trainable, scaling=scaling)
    return tune.with_resources(launcher, {"cpu": LAUNCHER_CPU})


def launch(config: dict[str, Any], stage_fn: Trainable, scaling: Scaling) -> None:
    """Tune function trainable: run `stage_fn(config)` on `scaling.workers` Train workers, then once here to
    report the stored result to Tune (`stage_fn` must be idempotent, as the stages' trial functions are)."""
    from ray import train, tune
    from ray.train.torch import TorchConfig, TorchTrainer

    storage = tune.get_context().get_storage()
    trainer = TorchTrainer(
        stage_fn, train_loop_config=config, torch_config=TorchConfig(backend=scaling.backend),
        scaling_config=train.ScalingConfig(num_workers=scaling.workers, use_gpu=scaling.gpu > 0,
                                           resources_per_worker={"CPU": scaling.cpu, "GPU": scaling.gpu}),
        run_config=train.RunConfig(name=TRAIN_DIR, storage_path=storage.trial_fs_path,
                                   storage_filesystem=storage.storage_filesystem,
                                   failure_config=train.FailureConfig(max_failures=0)))
    trainer.fit()
    stage_fn(config)

