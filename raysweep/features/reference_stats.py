"""Reference statistics of real images in one network's FID layer, computed once and cached as npz.

Real-image features do not change between trials, so they are extracted once per (dataset, split, network +
weights hash, layer, preprocessing) — the cache key — and every trial reads `<key>.npz`: μ [D] and Σ [D, D] in
float64, n, and up to MAX_KEPT_FEATURES feature rows (a seeded subset) for precision / recall.
Writes are atomic (temp file, rename), so trials racing on a cold cache each write a complete, identical file.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raysweep.atomic import atomic_file
from raysweep.features.frechet import Array, sample_moments
from raysweep.features.registry import FeatureSpec
from raysweep.hashing import config_hash

MAX_KEPT_FEATURES = 50_000
STATS_FORMAT = "raysweep.reference_stats/1"


@dataclass(frozen=True)
class ReferenceStats:
    """μ [D], Σ [D, D] float64 (unbiased, unshrunk) over all n images; features [min(n, MAX_KEPT_FEATURES), D]
    float32 in their original order."""

    key: str
    mu: np.ndarray
    sigma: np.ndarray
    n: int
    features: np.ndarray

    @classmethod
    def from_features(cls, key: str, features: Array, seed: int = 0) -> ReferenceStats:
        mu, sigma = sample_moments(features)
        x = np.asarray(features, dtype=np.float32)
        keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:MAX_KEPT_FEATURES])
        return cls(key, mu, sigma, len(x), x[keep])


def reference_key(dataset_key: str, split: str, network: FeatureSpec, preprocessing: str) -> str:
    """The cache key: everything that changes the real-image features."""
    return config_hash({"dataset": dataset_key, "split": split, "network": network.name,
                        "weights_sha256": network.weights_sha256, "layer": network.layers.fid,
                        "preprocessing": preprocessing}, 16)


def save_reference_stats(stats: ReferenceStats, path: Path) -> None:
    with atomic_file(path) as tmp:
        np.savez(tmp, format=STATS_FORMAT, key=stats.key, mu=stats.mu, sigma=stats.sigma, n=stats.n,
                 features=stats.features)


def load_reference_stats(path: Path) -> ReferenceStats:
    with np.load(path, allow_pickle=False) as f:
        if str(f["format"]) != STATS_FORMAT:
            raise ValueError(f"{path}: not raysweep reference statistics (format {str(f['format'])!r}, expected "
                             f"{STATS_FORMAT!r})")
        return ReferenceStats(str(f["key"]), f["mu"], f["sigma"], int(f["n"]), f["features"])


def cached_reference_stats(directory: Path, key: str, features: Callable[[], Array]) -> ReferenceStats:
    """`<directory>/<key>.npz` if present (its stored key must match), else `features()` [N, D] -> stats, saved."""
    path = Path(directory) / f"{key}.npz"
    if path.is_file():
        stats = load_reference_stats(path)
        if stats.key != key:
            raise ValueError(f"{path}: holds statistics for key {stats.key!r}, expected {key!r}; delete the file")
        return stats
    stats = ReferenceStats.from_features(key, features())
    save_reference_stats(stats, path)
    return stats
