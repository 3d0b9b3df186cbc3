"""Data-parallel trials: a Tune trial whose resources say `workers: N > 1` trains on N Ray Train workers.

The Tune + Train pattern of Ray >= 2.51 (Train V2): the Tune trial is a light launcher that builds a
`TorchTrainer` and waits for it; every Train worker runs the stage's own trial function. Inside the workers
`torch.distributed` is up (gloo on CPU, NCCL on GPUs), and that is what the rest of raysweep keys on:

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

import torch
import torch.distributed as dist

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


@dataclass(frozen=True)
class Shard:
    """This rank's place among `world` data-parallel ranks."""

    rank: int
    world: int

    def of(self, batch_size: int) -> slice:
        """The rows of a global batch this rank computes (contiguous, equal-sized)."""
        if batch_size % self.world:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {self.world} data-parallel workers")
        size = batch_size // self.world
        return slice(self.rank * size, (self.rank + 1) * size)

    @property
    def chief(self) -> bool:
        return self.rank == 0

    def mean(self, logs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """0-d logs averaged over the ranks (one all-reduce), so every rank logs the global batch's values."""
        keys = list(logs)
        stacked = torch.stack([logs[k].detach().float() for k in keys])
        dist.all_reduce(stacked)  # SUM: gloo has no AVG
        return dict(zip(keys, (stacked / self.world).unbind(), strict=True))


def in_train_worker() -> bool:
    """True inside a data-parallel trial's Ray Train worker (its process group is up)."""
    return dist.is_available() and dist.is_initialized()


def current_shard() -> Shard | None:
    """This worker's shard in a data-parallel trial with more than one rank, else None (single-process)."""
    if not in_train_worker() or dist.get_world_size() == 1:
        return None
    return Shard(dist.get_rank(), dist.get_world_size())


def is_chief() -> bool:
    """Rank 0 of a data-parallel trial, or any single-process trial: the one that logs and evaluates."""
    shard = current_shard()
    return shard is None or shard.chief


def average_gradients(params: list[torch.nn.Parameter], shard: Shard) -> None:
    """Average each parameter's gradient over the ranks as soon as backward accumulates it: data parallelism for
    modules trained through methods other than `forward` (a tokenizer's encode/decode, its regularizer, the
    discriminator), which `DistributedDataParallel` cannot wrap."""

    def hook(p: torch.Tensor) -> None:
        assert p.grad is not None
        dist.all_reduce(p.grad)
        p.grad.div_(shard.world)

    for p in params:
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(hook)


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

