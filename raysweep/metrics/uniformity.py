"""Latent uniformity, the VA-VAE protocol (METRICS.md §6): t-SNE → Gaussian KDE → how even the density is.

Each repeat draws its own sample, as VA-VAE's repeats do (hustvl/LightningDiT tools/latent_vis.py,
`sample_latents` + `calculate_uniformity_metrics`, commit 2725fed42a14898744433809949834e26957bcdd: a fresh
random image subset and a random pixel per image on every run, t-SNE at a fixed seed): one latent position per
image (a hash of sample_id and the repeat's seed, so any split of the data picks the same one) gives a C-vector;
finalize standardises them per channel, keeps at most `max_points` (a draw seeded by the repeat, over sample_id
order), embeds them in 2-D with t-SNE (PCA init, fixed seed: with init="pca" the t-SNE seed changes nothing, so
varying it would repeat one number) and evaluates a Scott-bandwidth Gaussian KDE at the points: density CV
(std/mean, lower is better), Gini of the densities (lower is better) and the normalised entropy −Σ p log p / log N
of p = density/Σ density (higher is better), each averaged over the repeats.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from raysweep.metrics.base import Accumulator, Batch, State, Value

MASK64 = (1 << 64) - 1


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed uint64 hash of uint64 x [N] (the SplitMix64 finaliser)."""
    x = (x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(MASK64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hashed_positions(sample_id: np.ndarray, seed: int, positions: int) -> np.ndarray:
    """A pseudo-random position in [0, positions) per sample, a function of (sample_id, seed) only: [N]."""
    with np.errstate(over="ignore"):
        mixed = splitmix64(sample_id.astype(np.uint64) ^ splitmix64(np.array([seed], np.uint64)))
    return (mixed % np.uint64(positions)).astype(np.int64)


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """One independent seed per repeat (positions and subset), derived from the metric's seed."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(repeats)]


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values [N]: 0 when all are equal, → 1 when one holds everything."""
    v = np.sort(np.asarray(values, np.float64))
    n = len(v)
    return float((2 * np.arange(1, n + 1) - n - 1) @ v / (n * v.sum()))


def density_scores(points: np.ndarray) -> tuple[float, float, float]:
    """(density CV, Gini, normalised entropy) of a Scott-bandwidth Gaussian KDE evaluated at points [N, 2]."""
    from scipy.stats import gaussian_kde

    density = gaussian_kde(points.T, bw_method="scott")(points.T)
    p = density / density.sum()
    entropy = float(-(p * np.log(p)).sum() / np.log(len(p)))
    return float(density.std() / density.mean()), gini(density), entropy


def tsne_embedding(features: np.ndarray, perplexity: float, iterations: int, seed: int) -> np.ndarray:
    """features [N, C] -> [N, 2] by Barnes-Hut t-SNE (scikit-learn), PCA initialisation, one thread (its OpenMP
    gradient threads spin and stall for minutes on a busy machine; a metric actor owns one core anyway)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, max_iter=iterations, init="pca", random_state=seed,
                    n_jobs=1).fit_transform(features)


class LatentUniformity(Accumulator):
    """Density CV, Gini and normalised entropy of the t-SNE map of one standardised latent vector per image."""

    name = "uniformity"
    perspective = "uniformity"

    def __init__(self, max_points: int = 10_000, perplexity: float = 30.0, iterations: int = 1000,
                 repeats: int = 3, seed: int = 0) -> None:
        if max_points < 4 or perplexity <= 0 or iterations < 250 or repeats < 1:
            raise ValueError(f"uniformity: need max_points >= 4, perplexity > 0, iterations >= 250 and repeats >= 1;"
                             f" got max_points={max_points}, perplexity={perplexity}, iterations={iterations}, "
                             f"repeats={repeats}")
        self.max_points, self.perplexity, self.iterations = max_points, perplexity, iterations
        self.repeats, self.seed = repeats, seed
        self.repeat_seeds = repeat_seeds(seed, repeats)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(m) for m in ("density_cv", "gini", "entropy", "points", "perplexity"))

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {self.key("density_cv"): False, self.key("gini"): False, self.key("entropy"): True}

    def params(self, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
        return {"max_points": self.max_points, "perplexity": self.perplexity, "iterations": self.iterations,
                "repeats": self.repeats, "seed": self.seed, "kde": "gaussian, scott"}

    def summarise(self, batch: Batch) -> State:
        c, h, w = batch.shape
        flat = batch.latent.reshape(len(batch.sample_id), c, h * w)
        rows = np.arange(len(flat))
        vectors = np.stack([flat[rows, :, hashed_positions(batch.sample_id, s, h * w)] for s in self.repeat_seeds],
                           axis=1)  # (B, R, C): one position per image and repeat
        return {"shape": batch.shape, "channels": batch.channels, "ids": [batch.sample_id],
                "vectors": [vectors.astype(np.float64)]}

    def subsample(self, vectors: np.ndarray, seed: int) -> np.ndarray:
        """At most `max_points` rows of vectors [N, C] in sample_id order, a draw seeded by the repeat."""
        if len(vectors) <= self.max_points:
            return vectors
        return vectors[np.sort(np.random.default_rng(seed).choice(len(vectors), self.max_points, replace=False))]

    def _finalize(self, state: State) -> dict[str, Value]:
        ids = np.concatenate(state["ids"])
        order = np.argsort(ids, kind="stable")
        # t-SNE is chaotic: statistics rounded to float32 erase the last-bit differences that merging in another
        # order leaves, so any split of the data feeds it the same bits
        channels = state["channels"]
        mean, std = (np.asarray(v, np.float32).astype(np.float64) for v in (channels.mean, channels.std))
        vectors = (np.concatenate(state["vectors"])[order] - mean) / std  # (N, R, C)
        n = min(len(vectors), self.max_points)
        perplexity = min(self.perplexity, (n - 1) / 3.0)  # scikit-learn needs perplexity < N; 3·perplexity ≤ N−1
        scores = np.full((1, 3), np.nan)
        if n >= 4:
            scores = np.array([density_scores(tsne_embedding(self.subsample(vectors[:, r], s), perplexity,
                                                             self.iterations, self.seed))
                               for r, s in enumerate(self.repeat_seeds)])
        cv, g, entropy = scores.mean(axis=0)
        return {self.key("density_cv"): float(cv), self.key("gini"): float(g), self.key("entropy"): float(entropy),
                self.key("points"): float(n), self.key("perplexity"): float(perplexity)}
