"""Model-dependent latent metrics (METRICS.md §5, §7, §8): they need the tokenizer or a diffusion model.

They are registered with the latent ones in `raysweep.metrics.registry.METRICS`; their typed base says what they
run on: `TokenizerMetric` (encoder / decoder and images, the model-metric job) or `DiffusionMetric` (a trained
velocity field, the diffusion-metric job). `GaussianFisher` needs no network: it is a latent `Accumulator`.
"""
from raysweep.metrics.base import KeyedMetric
from raysweep.metrics.model.base import (
    Codec,
    DiffusionInputs,
    DiffusionMetric,
    ImageMetric,
    ModelMetric,
    ModelOutput,
    TokenizerInputs,
    TokenizerMetric,
    VelocityFn,
)
from raysweep.metrics.model.distortion import EncoderDistortion, effective_rank, neighbour_directions, random_directions
from raysweep.metrics.model.equivariance import Equivariance, Transform, make_transforms
from raysweep.metrics.model.gaussian_fisher import GaussianFisher, fisher_information_rate, integrated_mmse
from raysweep.metrics.model.interpolation import INTERPOLATIONS, InterpolationFID, choose_partners, linear, slerp
from raysweep.metrics.model.velocity_fisher import VelocityFisher, sample_noise

__all__ = [
    "INTERPOLATIONS", "Codec", "DiffusionInputs", "DiffusionMetric", "EncoderDistortion", "Equivariance",
    "GaussianFisher", "ImageMetric", "InterpolationFID", "KeyedMetric", "ModelMetric", "ModelOutput",
    "TokenizerInputs", "TokenizerMetric", "Transform", "VelocityFisher", "VelocityFn", "choose_partners",
    "effective_rank", "fisher_information_rate", "integrated_mmse", "linear", "make_transforms",
    "neighbour_directions", "random_directions", "sample_noise", "slerp",
]
