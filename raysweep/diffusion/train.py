"""Flow-matching training of a backbone on standardised latents: AdamW, EMA copy, seeded minibatches and noise
from one CPU generator, so a run resumed from `state_dict()` reproduces the uninterrupted loss sequence."""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from raysweep.diffusion.backbones import FlowTransformer
from raysweep.diffusion.transport import get_loss, get_timestep_sampler, training_loss

OnLog = Callable[[int, dict[str, float]], None]  # (step after the update, logs)


class DiffusionTrainer:
    """Owns model, EMA, optimizer, step counter and RNG. Label dropout is the model's (`label_dropout`).

    bf16 autocast is used only when the model sits on CUDA; `compile` wraps the training forward in
    `torch.compile`; `grad_checkpointing` recomputes block activations in the backward pass.
    """

    def __init__(self, model: FlowTransformer, lr: float, beta1: float = 0.9, beta2: float = 0.999,
                 weight_decay: float = 0.0, ema_decay: float = 0.9999, timestep_sampler: str = "uniform",
                 loss: str = "mse", seed: int = 0, grad_clip: float | None = None,
                 sampler_params: Mapping[str, float] | None = None, compile: bool = False,
                 grad_checkpointing: bool = False) -> None:
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.model = model
        self.model.grad_checkpointing = grad_checkpointing
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self.ema_decay = ema_decay
        self.sampler = get_timestep_sampler(timestep_sampler, **(sampler_params or {}))
        self.loss = get_loss(loss)
        self.grad_clip = grad_clip
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
        self._forward: nn.Module = torch.compile(model) if compile else model  # type: ignore[assignment]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, x1: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One AdamW + EMA update on a batch x1 (B, C, H, W), y (B,)."""
        self.model.train()
        with self._autocast():
            loss, logs = training_loss(self._forward, x1.to(self.device), y.to(self.device), self.sampler,
                                       self.loss, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip or float("inf"))
        self.optimizer.step()
        self._update_ema()
        self.step += 1
        return {**logs, "grad_norm": float(grad_norm)}

    @torch.no_grad()
    def _update_ema(self) -> None:
        for ema_p, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - self.ema_decay)

    def fit(self, latents: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int,
            on_log: OnLog | None = None) -> None:
        """`steps` updates on minibatches drawn with replacement from latents (N, C, H, W), labels (N,)."""
        for _ in range(steps):
            idx = torch.randint(len(latents), (batch_size,), generator=self.generator)
            logs = self.train_step(latents[idx], labels[idx])
            if on_log is not None:
                on_log(self.step, logs)

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
