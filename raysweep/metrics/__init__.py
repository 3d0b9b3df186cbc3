"""Latent-space metrics as mergeable accumulators (init / update / merge / finalize), plain numpy and torch.

One code path serves a unit test, one Ray actor or a hundred: states are picklable and exact under any split.
`MetricSet(names, params)` runs registered latent metrics as one (`compute_metrics`: in one pass); `METRICS` also
registers the model-dependent ones (`raysweep.metrics.model`); definitions: shared/METRICS.md.
"""
from raysweep.metrics.base import (
    Accumulator,
    Batch,
    Consumes,
    KeyedMetric,
    LatentBatchLike,
    LatentStats,
    Moments,
    State,
    Value,
    check_batch,
    merge_all,
    run_accumulator,
)
from raysweep.metrics.fisher import fisher_information, kappa, mmse
from raysweep.metrics.metric_set import MetricSet, compute_metrics
from raysweep.metrics.mixture import Component, MixtureVelocityAmbiguity, mixture_residuals
from raysweep.metrics.registry import (
    METRICS,
    MetricInfo,
    build_metric,
    metric_directions,
    metric_info,
    metrics_consuming,
)
from raysweep.metrics.semantic import LatentNeighbourConsistency, LinearProbe, knn_label_agreement, pool_features
from raysweep.metrics.smoothness import SpectralEnergy, dct2, dct_matrix
from raysweep.metrics.spatial import SpatialDistances, SpatialStructure, resolve_distances
from raysweep.metrics.uniformity import LatentUniformity, density_scores, gini, hashed_positions
from raysweep.metrics.velocity import (
    VelocityAmbiguity,
    class_samples,
    dense_eigenvalues,
    kronecker_eigenvalues,
    kronecker_flip_flop,
    kronecker_spectrum,
    viv_curve,
    viv_dense,
    viv_from_eigenvalues,
)

__all__ = [
    "METRICS", "Accumulator", "Batch", "Component", "Consumes", "KeyedMetric", "LatentBatchLike",
    "LatentNeighbourConsistency", "LatentStats", "LatentUniformity", "LinearProbe", "MetricInfo", "MetricSet",
    "MixtureVelocityAmbiguity", "Moments", "SpatialDistances", "SpatialStructure", "SpectralEnergy", "State", "Value",
    "VelocityAmbiguity", "build_metric", "check_batch", "class_samples", "compute_metrics", "dct2", "dct_matrix",
    "dense_eigenvalues", "density_scores", "fisher_information", "gini", "hashed_positions", "kappa",
    "knn_label_agreement", "kronecker_eigenvalues", "kronecker_flip_flop", "kronecker_spectrum", "merge_all",
    "metric_directions", "metric_info", "metrics_consuming", "mixture_residuals", "mmse", "pool_features",
    "resolve_distances", "run_accumulator", "viv_curve", "viv_dense", "viv_from_eigenvalues",
]
