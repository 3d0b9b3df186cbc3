"""Flow matching on tokenizer latents: backbones (SiT, LightningDiT), transport, Euler/CFG sampling,
trajectory geometry and the training loop. Plain torch; no Ray, no MLflow."""
from __future__ import annotations

from raysweep.diffusion.backbones import BACKBONES, FlowTransformer, LightningDiT, SiT, build_backbone, recipe_for
from raysweep.diffusion.recipes import Recipe
from raysweep.diffusion.sampler import SampleResult, cfg_velocity, euler_sample, ode_sample
from raysweep.diffusion.train import DiffusionTrainer
from raysweep.diffusion.trajectory import efficiency, length_ratios, straightness
from raysweep.diffusion.transport import (
    LOSSES,
    TIMESTEP_SAMPLERS,
    get_loss,
    get_timestep_sampler,
    interpolate,
    training_loss,
    velocity_target,
)

__all__ = [
    "BACKBONES", "LOSSES", "TIMESTEP_SAMPLERS", "DiffusionTrainer", "FlowTransformer", "LightningDiT", "Recipe",
    "SampleResult", "SiT", "build_backbone", "recipe_for", "cfg_velocity", "efficiency", "euler_sample", "get_loss",
    "ode_sample", "get_timestep_sampler", "interpolate", "length_ratios", "straightness", "training_loss",
    "velocity_target",
]
