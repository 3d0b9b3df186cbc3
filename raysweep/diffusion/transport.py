"""Flow-matching transport (METRICS.md §1): the linear path between noise and data, timestep samplers and
training losses, each a small registry. Noise x0 ~ N(0, I), data x1, `x_t = t·x1 + (1−t)·x0` (t = 1 is data),
velocity target `v = x1 − x0`."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Protocol

import torch

TimestepSampler = Callable[[int, torch.Generator], torch.Tensor]  # (n, generator) -> t (n,) in (0, 1), its device
LossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]  # (pred, target)


class VelocityField(Protocol):
    """A class-conditional velocity field `v(x_t (B, ...), t (B,), y (B,)) -> (B, ...)`."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


class TrainableVelocityModel(Protocol):
    """What training needs from a backbone: the field and label dropout to its null class."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def drop_labels(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1)))  # (B, 1, ..., 1)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = t·x1 + (1−t)·x0. x0, x1 (B, ...), t (B,) -> (B, ...)."""
    t = _per_sample(t, x1)
    return t * x1 + (1 - t) * x0


def velocity_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """d x_t / dt along the linear path: v = x1 − x0, (B, ...)."""
    return x1 - x0


def uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    """t ~ U(0, 1), (n,). SiT's choice."""
    return torch.rand(n, generator=generator, device=generator.device)


def logit_normal(n: int, generator: torch.Generator, mu: float = 0.0, sigma: float = 1.0) -> torch.Tensor:
    """t = sigmoid(mu + sigma·ε), ε ~ N(0, 1), (n,): concentrates training on intermediate times (LightningDiT)."""
    return torch.sigmoid(mu + sigma * torch.randn(n, generator=generator, device=generator.device))


TIMESTEP_SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"uniform": uniform, "logit_normal": logit_normal}


def get_timestep_sampler(name: str, **params: float) -> TimestepSampler:
    """Registry lookup; `params` (e.g. mu, sigma) are bound to the sampler."""
    if name not in TIMESTEP_SAMPLERS:
        raise ValueError(f"unknown timestep sampler {name!r}; allowed: {sorted(TIMESTEP_SAMPLERS)}")
    allowed = list(inspect.signature(TIMESTEP_SAMPLERS[name]).parameters)[2:]  # after (n, generator)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"timestep sampler {name!r}: unknown parameter(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(allowed) or 'none'}")
    return partial(TIMESTEP_SAMPLERS[name], **params)


def mse(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean squared velocity error over all elements."""
    value = (pred - target).pow(2).mean()
    return value, {"mse": value.detach()}


COS_EPS = 1e-3  # softening of ‖pred‖ in the cosine term


def mse_cos(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MSE + (1 − cosine) over the channel axis at every position, as LightningDiT's velocity-direction loss.

    The cosine uses sqrt(‖pred‖² + COS_EPS²): the backbone's output starts at exactly zero, where the plain
    cosine's gradient (∝ 1/‖pred‖) explodes on the first step. pred, target (B, C, H, W).
    """
    err, logs = mse(pred, target)
    soft_norm = (pred.square().sum(dim=1) + COS_EPS**2).sqrt()  # (B, H, W)
    cos = (pred * target).sum(dim=1) / (soft_norm * target.norm(dim=1).clamp_min(COS_EPS))  # (B, H, W)
    cos_loss = (1 - cos).mean()
    return err + cos_loss, {**logs, "cos": cos_loss.detach()}


LOSSES: dict[str, LossFn] = {"mse": mse, "mse+cos": mse_cos}


def get_loss(name: str) -> LossFn:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {sorted(LOSSES)}")
    return LOSSES[name]


def training_loss(model: TrainableVelocityModel, x1: torch.Tensor, y: torch.Tensor,
                  sampler: TimestepSampler, loss: LossFn, generator: torch.Generator,
                  shard: slice = slice(None)) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One flow-matching loss on data x1 (B, C, H, W) with labels y (B,). All randomness (noise, t, label
    dropout) comes from `generator` (on x1's device for speed; any device works), so the sequence is
    reproducible and resumable. Logs are detached 0-d tensors: reading them (`float`) waits for the device.
    `shard`: the rows a data-parallel rank computes; the randomness is still drawn for the whole batch, so the
    shards of all ranks together are exactly the single-process step."""
    x0 = torch.randn(x1.shape, generator=generator, device=generator.device).to(x1.device)  # (B, C, H, W)
    t = sampler(x1.shape[0], generator).to(x1.device)  # (B,)
    y = model.drop_labels(y, generator)  # (B,)
    x0, x1, t, y = x0[shard], x1[shard], t[shard], y[shard]  # (b, ...) with b = B / ranks
    pred = model(interpolate(x0, x1, t), t, y).float()  # (b, C, H, W)
    value, parts = loss(pred, velocity_target(x0, x1))
    return value, {"loss": value.detach(), **parts}
