"""The metric registry: study YAML names -> metric classes, for latent and model-dependent metrics alike (the latent
ones run together through `metric_set.MetricSet`).

Each class's typed base says what it consumes (`Accumulator`: latents; `TokenizerMetric`; `DiffusionMetric`), so
the plan puts it in the right job and the stage runs it through that base: adding a metric is a class and a line
here.
"""
from __future__ import annotations

from typing import Any, TypeVar

from raysweep.metrics.base import Consumes, KeyedMetric, MetricInfo
from raysweep.metrics.mixture import MixtureVelocityAmbiguity
from raysweep.metrics.model.distortion import EncoderDistortion
from raysweep.metrics.model.equivariance import Equivariance
from raysweep.metrics.model.gaussian_fisher import GaussianFisher
from raysweep.metrics.model.interpolation import InterpolationFID
from raysweep.metrics.model.velocity_fisher import VelocityFisher
from raysweep.metrics.semantic import LatentNeighbourConsistency, LinearProbe
from raysweep.metrics.smoothness import SpectralEnergy
from raysweep.metrics.spatial import SpatialStructure
from raysweep.metrics.uniformity import LatentUniformity
from raysweep.metrics.velocity import VelocityAmbiguity

M = TypeVar("M", bound=KeyedMetric)

METRICS: dict[str, MetricInfo] = {
    "viv": MetricInfo(VelocityAmbiguity, "velocity irreducible variance under a Kronecker Gaussian class model"),
    "sec": MetricInfo(SpectralEnergy, "DCT energy share above a Manhattan frequency"),
    "lnc": MetricInfo(LatentNeighbourConsistency, "label agreement of cosine kNN of pooled latents"),
    "linear_probe": MetricInfo(LinearProbe, "held-out accuracy of a linear probe on pooled latents"),
    "spatial": MetricInfo(SpatialStructure, "iREPA LDS, CDS and SRSS of token cosines"),
    "uniformity": MetricInfo(LatentUniformity, "t-SNE -> KDE density CV, Gini and entropy of latent vectors"),
    "viv_mixture": MetricInfo(MixtureVelocityAmbiguity, "Monte-Carlo VIV of the class mixture (unconditional)"),
    "fisher": MetricInfo(GaussianFisher, "FI(t), FIR(t), mmse(t) of the class-Gaussian model"),
    "equivariance": MetricInfo(Equivariance, "Enc(τx) vs τ(Enc x) for rotations and scalings"),
    "distortion": MetricInfo(EncoderDistortion, "encoder compression, tangential distortion, curvature from "
                             "Jacobian-vector products"),
    "ifid": MetricInfo(InterpolationFID, "FID of decoded slerp/linear neighbour interpolants"),
    "velocity_fisher": MetricInfo(VelocityFisher, "FI(t), FIR(t), mmse(t) from a diffusion model's velocity"),
}


def metric_info(name: str) -> MetricInfo:
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}'; allowed: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def metrics_consuming(consumes: Consumes) -> list[str]:
    """The registered names of the metrics that run on `consumes`, sorted."""
    return sorted(n for n, info in METRICS.items() if info.consumes == consumes)


def build_metric(name: str, base: type[M] = KeyedMetric, /, **params: Any) -> M:  # type: ignore[assignment]
    """A configured metric that is a `base` (what the calling stage runs: `Accumulator`, `TokenizerMetric`, ...).
    Unknown metric and parameter names, and a metric of another kind, raise ValueError listing the allowed."""
    info = metric_info(name)
    if not issubclass(info.factory, base):
        allowed = sorted(n for n, i in METRICS.items() if issubclass(i.factory, base))
        raise ValueError(f"metric '{name}' runs on '{info.consumes}', not '{base.consumes}'; "
                         f"allowed: {', '.join(allowed)}")
    metric: M = info.build(f"metric '{name}'", **params)
    return metric


def metric_directions() -> dict[str, bool]:
    """Every headline key of every registered metric (default parameters) -> higher is better: what the analysis
    sign-normalises with."""
    return {k: v for info in METRICS.values() for k, v in info.directions.items()}

