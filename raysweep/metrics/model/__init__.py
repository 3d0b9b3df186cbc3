"""Model-dependent latent metrics (METRICS.md §5, §7, §8): they need the tokenizer or a diffusion model.

`MODEL_METRICS` maps study YAML names to factories, like `raysweep.metrics.METRICS`; `needs` says what a metric
consumes: "latents" (a plain latent `Accumulator`, runs in the Ray Data metric stage), "tokenizer" (encoder /
decoder and images, `raysweep.pipeline.model_metric_stage.run_model_metrics`) or "diffusion" (a trained velocity
field, `run_diffusion_fisher`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raysweep.metrics.base import KeyedMetric, MetricInfo
from raysweep.metrics.model.base import Codec, ModelMetric, VelocityFn
from raysweep.metrics.model.distortion import EncoderDistortion, effective_rank, neighbour_directions, random_directions
from raysweep.metrics.model.equivariance import Equivariance, Transform, make_transforms
from raysweep.metrics.model.gaussian_fisher import GaussianFisher, fisher_information_rate, integrated_mmse
from raysweep.metrics.model.interpolation import INTERPOLATIONS, InterpolationFID, choose_partners, linear, slerp
from raysweep.metrics.model.velocity_fisher import VelocityFisher, sample_noise

NEEDS = ("latents", "tokenizer", "diffusion")


@dataclass(frozen=True)
class ModelMetricInfo(MetricInfo):
    """A registered model-dependent metric and what it consumes (one of NEEDS)."""

    needs: str


MODEL_METRICS: dict[str, ModelMetricInfo] = {
    "fisher": ModelMetricInfo(GaussianFisher, "FI(t), FIR(t), mmse(t) of the class-Gaussian model", "latents"),
    "equivariance": ModelMetricInfo(Equivariance, "Enc(τx) vs τ(Enc x) for rotations and scalings", "tokenizer"),
    "distortion": ModelMetricInfo(EncoderDistortion, "encoder compression, tangential distortion, curvature "
                                  "from Jacobian-vector products", "tokenizer"),
    "ifid": ModelMetricInfo(InterpolationFID, "FID of decoded slerp/linear neighbour interpolants", "tokenizer"),
    "velocity_fisher": ModelMetricInfo(VelocityFisher, "FI(t), FIR(t), mmse(t) from a diffusion model's velocity",
                                       "diffusion"),
}


def model_metric_info(name: str) -> ModelMetricInfo:
    if name not in MODEL_METRICS:
        raise ValueError(f"unknown model metric '{name}'; allowed: {', '.join(sorted(MODEL_METRICS))}")
    return MODEL_METRICS[name]


def build_model_metric(name: str, **params: Any) -> Any:
    """A configured metric; unknown names and parameter names raise ValueError listing the allowed ones."""
    return model_metric_info(name).build(f"model metric '{name}'", **params)


__all__ = [
    "INTERPOLATIONS", "MODEL_METRICS", "NEEDS", "Codec", "EncoderDistortion", "Equivariance", "GaussianFisher",
    "InterpolationFID", "KeyedMetric", "ModelMetric", "ModelMetricInfo", "Transform", "VelocityFisher",
    "VelocityFn", "build_model_metric", "choose_partners", "effective_rank", "fisher_information_rate",
    "integrated_mmse", "linear", "make_transforms", "model_metric_info", "neighbour_directions",
    "random_directions", "sample_noise", "slerp",
]
