"""A data-parallel rank's view of `torch.distributed`: its shard of every global batch, whether it is the chief, and
gradient averaging. Plain torch: the process group may come from Ray Train (`engine/data_parallel.py`) or anything
else, and the training loops of tokenizers and diffusion models use it without knowing Ray."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


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
