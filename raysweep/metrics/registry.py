"""The latent-metric registry: study YAML names -> accumulator factories, plus a one-pass runner."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from raysweep.metrics.base import Accumulator, LatentBatchLike, MetricInfo, Value, check_batch
from raysweep.metrics.mixture import MixtureVelocityAmbiguity
from raysweep.metrics.model.gaussian_fisher import GaussianFisher
from raysweep.metrics.semantic import LatentNeighbourConsistency, LinearProbe
from raysweep.metrics.smoothness import SpectralEnergy
from raysweep.metrics.spatial import SpatialStructure
from raysweep.metrics.uniformity import LatentUniformity
from raysweep.metrics.velocity import VelocityAmbiguity

METRICS: dict[str, MetricInfo] = {
    "viv": MetricInfo(VelocityAmbiguity, "velocity irreducible variance under a Kronecker Gaussian class model"),
    "sec": MetricInfo(SpectralEnergy, "DCT energy share above a Manhattan frequency"),
    "lnc": MetricInfo(LatentNeighbourConsistency, "label agreement of cosine kNN of pooled latents"),
    "linear_probe": MetricInfo(LinearProbe, "held-out accuracy of a linear probe on pooled latents"),
    "spatial": MetricInfo(SpatialStructure, "iREPA LDS, CDS and SRSS of token cosines"),
    "uniformity": MetricInfo(LatentUniformity, "t-SNE -> KDE density CV, Gini and entropy of latent vectors"),
    "viv_mixture": MetricInfo(MixtureVelocityAmbiguity, "Monte-Carlo VIV of the class mixture (unconditional)"),
    "fisher": MetricInfo(GaussianFisher, "FI(t), FIR(t), mmse(t) of the class-Gaussian model"),
}


def metric_info(name: str) -> MetricInfo:
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}'; allowed: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def build_metric(name: str, **params: Any) -> Accumulator:
    """A configured accumulator; unknown metric names and parameter names raise ValueError listing the allowed."""
    metric: Accumulator = metric_info(name).build(f"metric '{name}'", **params)
    return metric


def metric_directions() -> dict[str, bool]:
    """Every headline key of every registered metric, latent and model-dependent (default parameters) -> higher
    is better: what the analysis sign-normalises with."""
    from raysweep.metrics.model import MODEL_METRICS

    infos = [*METRICS.values(), *MODEL_METRICS.values()]
    return {k: v for info in infos for k, v in info.directions.items()}


def compute_metrics(batches: Iterable[LatentBatchLike], names: list[str] | None = None,
                    params: dict[str, dict[str, Any]] | None = None) -> dict[str, Value]:
    """Run the named metrics (default: all) over the batches in one pass; returns {key: float | array}."""
    names = list(names) if names is not None else sorted(METRICS)
    params = params or {}
    stray = sorted(set(params) - set(names))
    if stray:
        raise ValueError(f"params given for metric(s) {', '.join(stray)} not in names {names}")
    metrics = {name: build_metric(name, **params.get(name, {})) for name in names}
    states = {name: m.init() for name, m in metrics.items()}
    for batch in batches:
        checked = check_batch(batch)  # validated once; its cache shares per-batch summaries between metrics
        states = {name: m.update(states[name], checked) for name, m in metrics.items()}
    values: dict[str, Value] = {}
    for name, m in metrics.items():
        values.update(m.finalize(states[name]))
    return values
