"""Optimisation recipes of the paper's Table 2, one per backbone family, so a preset carries its own defaults.

SiT (Ma et al. 2024): uniform t, MSE, AdamW lr 1e-4, β2 0.999, batch 256. LightningDiT (Yao et al. 2025):
logit-normal t (μ = 0, σ = 1), MSE + cosine, AdamW lr 2e-4, β2 0.95, batch 1024, gradient clipping at 1.
Both keep an EMA of decay 0.9999 and no weight decay, as their official code does (Table 2 leaves these out).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """Everything `DiffusionTrainer` and its minibatch loop need besides the model."""

    timestep_sampler: str
    loss: str
    lr: float
    beta2: float
    batch_size: int
    steps: int
    beta1: float = 0.9
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    grad_clip: float | None = None
    sampler_params: tuple[tuple[str, float], ...] = ()  # (name, value) pairs: hashable and picklable

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `DiffusionTrainer` (batch size and steps belong to `fit`)."""
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "weight_decay": self.weight_decay,
                "ema_decay": self.ema_decay, "timestep_sampler": self.timestep_sampler, "loss": self.loss,
                "grad_clip": self.grad_clip, "sampler_params": dict(self.sampler_params)}


SIT_RECIPE = Recipe("uniform", "mse", lr=1e-4, beta2=0.999, batch_size=256, steps=400_000)
LIGHTNINGDIT_RECIPE = Recipe("logit_normal", "mse+cos", lr=2e-4, beta2=0.95, batch_size=1024, steps=100_000,
                             grad_clip=1.0, sampler_params=(("mu", 0.0), ("sigma", 1.0)))
