"""Optimisation recipes of the paper's Table 2, one per backbone family, so a preset carries its own defaults.

SiT (Ma et al. 2024): uniform t, MSE, AdamW lr 1e-4, β2 0.999, batch 256. LightningDiT (Yao et al. 2025):
logit-normal t (μ = 0, σ = 1), MSE + cosine, AdamW lr 2e-4, β2 0.95, batch 1024, gradient clipping at 1.
Both keep an EMA of decay 0.9999 and no weight decay, as their official code does (Table 2 leaves these out). The
EMA decay warms up as in LDM (see `DiffusionTrainer.ema_decay_at`) so that short runs sample a trained model.

These recipes are the one source of the optimisation defaults: a study's `DiffusionTrial` takes every field it
does not set from its backbone's recipe (`recipe_defaults`). Tiny CPU presets use `cpu_recipe`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

FIT_FIELDS = ("batch_size", "steps")  # recipe fields of the minibatch loop, not of the trainer


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
    ema_warmup: bool = True
    grad_clip: float | None = None
    sampler_params: tuple[tuple[str, float], ...] = ()  # (name, value) pairs: hashable and picklable

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `DiffusionTrainer` (batch size and steps belong to `fit`)."""
        values = recipe_defaults(self)
        return {name: values[name] for name in trainer_fields()}


SIT_RECIPE = Recipe("uniform", "mse", lr=1e-4, beta2=0.999, batch_size=256, steps=400_000)
SIT_XL_RECIPE = replace(SIT_RECIPE, steps=80_000)
LIGHTNINGDIT_RECIPE = Recipe("logit_normal", "mse+cos", lr=2e-4, beta2=0.95, batch_size=1024, steps=100_000,
                             grad_clip=1.0, sampler_params=(("mu", 0.0), ("sigma", 1.0)))


def cpu_recipe(recipe: Recipe) -> Recipe:
    """A family's recipe sized for minutes on 2 CPU cores instead of days on GPUs: a larger lr on smaller batches,
    a short run whose EMA horizon (~1k steps) fits it, and clipping that keeps the large lr stable."""
    return replace(recipe, lr=1e-3, batch_size=64, steps=600, ema_decay=0.999, grad_clip=1.0)


def trainer_fields() -> tuple[str, ...]:
    """Recipe fields that `DiffusionTrainer` takes: one list for recipes and for a study's resolved trials."""
    return tuple(f.name for f in fields(Recipe) if f.name not in FIT_FIELDS)


def recipe_defaults(recipe: Recipe, timestep_sampler: str | None = None) -> dict[str, Any]:
    """The recipe as `DiffusionTrial` field values. Its sampler parameters belong to its own timestep sampler:
    with another `timestep_sampler` chosen they are left out ({})."""
    values = {f.name: getattr(recipe, f.name) for f in fields(recipe)}
    own = timestep_sampler in (None, recipe.timestep_sampler)
    values["sampler_params"] = dict(recipe.sampler_params) if own else {}
    return values
