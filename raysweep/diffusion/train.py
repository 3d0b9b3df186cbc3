"""Flow-matching training of a backbone on standardised latents: AdamW, EMA copy, seeded minibatches and noise
from one generator on the model's device, so a run resumed from `state_dict()` reproduces the uninterrupted loss
sequence (bit-exact on CPU), and no step waits for the host: noise, indices and t are drawn on the device, and logs
reach the host in one transfer per `LOG_SYNC_EVERY` steps.

Data-parallel (`shard`, in a Ray Train worker): the backbone is wrapped in `DistributedDataParallel`, every rank
draws the same global batch and noise and computes its `shard` of it, and the logs are averaged over the ranks, so
N ranks reproduce the single-process loss sequence of the same global batch (up to float summation order)."""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from raysweep.diffusion.backbones import FlowTransformer
from raysweep.diffusion.precision import backbone_autocast
from raysweep.diffusion.transport import TrainableVelocityModel, get_loss, get_timestep_sampler, training_loss
from raysweep.nn.distributed import Shard

OnLog = Callable[[int, dict[str, float]], None]  # (step after the update, logs)
LOG_SYNC_EVERY = 50  # default number of steps whose logs are copied to the host together (one device sync)


class DiffusionTrainer:
    """Owns model, EMA, optimizer, step counter and RNG. Label dropout is the model's (`label_dropout`).

    Put the model on its device before building the trainer: the EMA copy and the generator are made there.
    bf16 autocast (`precision.backbone_autocast`) is used only when the model sits on CUDA; `compile` wraps the
    training forward in `torch.compile`; `grad_checkpointing` recomputes block activations in the backward pass.
    Table 2 defaults per preset: `DiffusionTrainer(model, seed=s, **recipe_for(name).trainer_kwargs())`.

    `ema_warmup` uses the decay `ema_decay_at(step)`: with a fixed 0.9999 the EMA of a run of a few hundred or a
    few thousand steps would still be mostly the random initialisation, and that is the model sampling scores.
    """

    def __init__(self, model: FlowTransformer, lr: float, beta1: float = 0.9, beta2: float = 0.999,
                 weight_decay: float = 0.0, ema_decay: float = 0.9999, timestep_sampler: str = "uniform",
                 loss: str = "mse", seed: int = 0, grad_clip: float | None = None,
                 sampler_params: Mapping[str, float] | None = None, compile: bool = False,
                 grad_checkpointing: bool = False, ema_warmup: bool = True, shard: Shard | None = None) -> None:
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.model = model
        self.model.grad_checkpointing = grad_checkpointing
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self.ema_decay = ema_decay
        self.ema_warmup = ema_warmup
        self.sampler = get_timestep_sampler(timestep_sampler, **(sampler_params or {}))
        self.loss = get_loss(loss)
        self.grad_clip = grad_clip
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.step = 0
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
        self.shard = shard
        forward: nn.Module = model if shard is None else _VelocityDDP(model)
        self._forward: TrainableVelocityModel = torch.compile(forward) if compile else forward  # type: ignore[assignment]
        self._params: list[torch.Tensor] = list(model.parameters())
        self._ema_params: list[torch.Tensor] = list(self.ema.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _step(self, x1: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One AdamW + EMA update on a batch x1 (B, C, H, W), y (B,) on the device; logs stay 0-d tensors."""
        rows = slice(None) if self.shard is None else self.shard.of(len(x1))
        with backbone_autocast(self.device):
            loss, logs = training_loss(self._forward, x1, y, self.sampler, self.loss, self.generator, rows)
        if self.shard is not None:
            logs = self.shard.mean(logs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.get_total_norm([p.grad for p in self._params if p.grad is not None])
        if self.grad_clip is not None:
            nn.utils.clip_grads_with_norm_(self._params, self.grad_clip, grad_norm)
        self.optimizer.step()
        self.step += 1
        with torch.no_grad():
            torch._foreach_lerp_(self._ema_params, self._params, 1.0 - self.ema_decay_at(self.step))
        return {**logs, "grad_norm": grad_norm}

    def ema_decay_at(self, step: int) -> float:
        """Decay of the EMA update after optimizer update number `step` (1, 2, ...): `ema_decay`, or with warm-up
        min(ema_decay, (1 + step) / (10 + step)) as in LDM's LitEma (2/11 at the first update, 0.99 near step 890,
        0.999 near step 9k). It depends on the step only, so a resumed run continues the same schedule."""
        return min(self.ema_decay, (1 + step) / (10 + step)) if self.ema_warmup else self.ema_decay

    def train_step(self, x1: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One AdamW + EMA update on a batch x1 (B, C, H, W), y (B,); logs as floats."""
        self.model.train()
        logs = self._step(x1.to(self.device), y.to(self.device))
        return {k: float(v) for k, v in logs.items()}

    def fit(self, latents: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int,
            on_log: OnLog | None = None, log_sync_every: int = LOG_SYNC_EVERY) -> None:
        """`steps` updates on minibatches drawn with replacement from latents (N, C, H, W), labels (N,); pass
        them on the model's device to save a copy per call. `on_log(step, logs)` is called for every step, in
        order, in groups of `log_sync_every` steps (one host transfer each) and at the latest when `fit` returns."""
        self.model.train()
        latents, labels = latents.to(self.device), labels.to(self.device)
        pending: list[tuple[int, dict[str, torch.Tensor]]] = []
        for i in range(steps):
            idx = torch.randint(len(latents), (batch_size,), generator=self.generator, device=self.device)
            logs = self._step(latents[idx], labels[idx])
            if on_log is None:
                continue
            pending.append((self.step, logs))
            if len(pending) == log_sync_every or i == steps - 1:
                _flush(pending, on_log)

    def velocity_fn_for_sampling(self) -> FlowTransformer:
        """The EMA model, in eval mode: what samples and gFID are computed with."""
        return self.ema

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and scalars only (loadable with `torch.load(..., weights_only=True)`)."""
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.generator.set_state(state["rng"])


class _VelocityDDP(DistributedDataParallel):
    """DDP over a backbone that still offers the backbone's `drop_labels` (training_loss calls it)."""

    def drop_labels(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.module.drop_labels(y, generator)


def _flush(pending: list[tuple[int, dict[str, torch.Tensor]]], on_log: OnLog) -> None:
    """Copy the pending steps' logs to the host in one transfer, hand them to `on_log` in order, clear."""
    keys = list(pending[0][1])
    rows = torch.stack([torch.stack([logs[k].float() for k in keys]) for _, logs in pending]).tolist()
    for (step, _), row in zip(pending, rows, strict=True):
        on_log(step, dict(zip(keys, row, strict=True)))
    pending.clear()
