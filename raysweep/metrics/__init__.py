"""Latent-space metrics as mergeable accumulators (init / update / merge / finalize), plain numpy and torch.

One code path serves a unit test, one Ray actor or a hundred: states are picklable and exact under any split.
`compute_metrics(batches, names, params)` runs registered metrics in one pass; definitions: shared/METRICS.md.
"""
from raysweep.metrics.base import (
    Accumulator,
    Batch,
    LatentBatchLike,
    Moments,
    State,
    Value,
    check_batch,
    merge_all,
    run_accumulator,
)
from raysweep.metrics.fisher import fisher_information, kappa, mmse
from raysweep.metrics.registry import METRICS, MetricInfo, build_metric, compute_metrics, metric_directions, metric_info
from raysweep.metrics.semantic import LatentNeighbourConsistency, LinearProbe, knn_label_agreement, pool_features
from raysweep.metrics.smoothness import SpectralEnergy, dct2, dct_matrix
from raysweep.metrics.spatial import SpatialDistances, SpatialStructure, resolve_distances
from raysweep.metrics.velocity import (
    VelocityAmbiguity,
    dense_eigenvalues,
    kronecker_eigenvalues,
    kronecker_flip_flop,
    viv_curve,
    viv_dense,
    viv_from_eigenvalues,
)

__all__ = [
    "METRICS", "Accumulator", "Batch", "LatentBatchLike", "LatentNeighbourConsistency", "LinearProbe", "MetricInfo",
    "Moments", "SpatialDistances", "SpatialStructure", "SpectralEnergy", "State", "Value", "VelocityAmbiguity",
    "build_metric", "check_batch", "compute_metrics", "dct2", "dct_matrix", "dense_eigenvalues", "fisher_information",
    "kappa", "knn_label_agreement", "kronecker_eigenvalues", "kronecker_flip_flop", "merge_all", "metric_directions",
    "metric_info", "mmse", "pool_features", "resolve_distances", "run_accumulator", "viv_curve", "viv_dense",
    "viv_from_eigenvalues",
]
