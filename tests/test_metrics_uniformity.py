"""Uniformity (t-SNE -> KDE): closed forms of the density scores, split-free position choice, end to end."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from raysweep.metrics import build_metric, density_scores, gini, hashed_positions, run_accumulator


def test_gini_closed_forms():
    assert gini(np.ones(7)) == pytest.approx(0.0, abs=1e-12)
    assert gini(np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.75)  # (n-1)/n: one holds everything
    assert gini(np.array([1.0, 3.0])) == pytest.approx(0.25)  # mean |a-b| / (2 mean) = 2 / (2·2·2)


def test_an_even_grid_is_more_uniform_than_clusters():
    grid = np.stack(np.meshgrid(np.arange(12.0), np.arange(12.0)), axis=-1).reshape(-1, 2)
    rng = np.random.default_rng(0)
    clusters = np.concatenate([rng.normal(0, 0.3, (120, 2)), rng.normal(8, 0.3, (20, 2)), rng.uniform(0, 12, (4, 2))])
    cv_grid, gini_grid, entropy_grid = density_scores(grid)
    cv_clusters, gini_clusters, entropy_clusters = density_scores(clusters)
    assert cv_grid < cv_clusters and gini_grid < gini_clusters and entropy_grid > entropy_clusters
    assert 0.95 < entropy_grid <= 1.0


def test_positions_depend_on_sample_id_and_seed_only():
    ids = np.arange(5000)
    pos = hashed_positions(ids, seed=3, positions=16)
    np.testing.assert_array_equal(pos[1234:1240], hashed_positions(ids[1234:1240], seed=3, positions=16))
    counts = np.bincount(pos, minlength=16)
    assert counts.min() > 250 and counts.max() < 380  # about 5000/16 = 312 each
    assert (hashed_positions(ids, seed=4, positions=16) != pos).mean() > 0.8


def test_uniformity_end_to_end_records_points_and_perplexity():
    rng = np.random.default_rng(0)
    data = SimpleNamespace(sample_id=np.arange(60), label=np.zeros(60, int), fg_mask=None,
                           latent=rng.normal(size=(60, 3, 4, 4)).astype(np.float32))
    out = run_accumulator(build_metric("uniformity", max_points=40, iterations=250, repeats=1), [data])
    assert out["latent/uniformity/points"] == 40.0
    assert out["latent/uniformity/perplexity"] == 13.0  # (40 - 1) / 3: scikit-learn needs perplexity < N
    assert 0.0 < out["latent/uniformity/gini"] < 1.0 and 0.0 < out["latent/uniformity/entropy"] <= 1.0


def va_vae_reference(latent: np.ndarray, ids: np.ndarray, sample_seed: int, max_points: int,
                     tsne_seed: int) -> tuple[float, float, float]:
    """One VA-VAE repeat, written from its definition (hustvl/LightningDiT tools/latent_vis.py, commit
    2725fed42a14898744433809949834e26957bcdd): a random pixel per image, per-channel standardisation with the
    statistics of all latents, a random subset of images, t-SNE (PCA init), Scott KDE at the points, then density
    std/mean, normalised entropy in bits and the Gini of the densities. The repeat's randomness is its
    `sample_seed`: the pixel is `hashed_positions(ids, sample_seed)`, the subset a `default_rng(sample_seed)` draw."""
    from scipy.stats import gaussian_kde
    from sklearn.manifold import TSNE

    n, c, h, w = latent.shape
    pixel = latent.reshape(n, c, h * w)[np.arange(n), :, hashed_positions(ids, sample_seed, h * w)]
    mean, std = (v.astype(np.float32).astype(np.float64) for v in (latent.mean((0, 2, 3)), latent.std((0, 2, 3))))
    pixel = (pixel - mean) / std  # statistics rounded to float32 as the metric stores them: t-SNE is chaotic
    if n > max_points:
        pixel = pixel[np.sort(np.random.default_rng(sample_seed).choice(n, max_points, replace=False))]
    points = TSNE(2, perplexity=min(30.0, (len(pixel) - 1) / 3), max_iter=250, init="pca",
                  random_state=tsne_seed).fit_transform(pixel)
    density = gaussian_kde(points.T)(points.T)
    p = density / density.sum()
    entropy = -(p * np.log2(p)).sum() / np.log2(len(p))
    ranks = np.arange(1, len(p) + 1)
    gini_ = ((2 * ranks - len(p) - 1) @ np.sort(density)) / (len(p) * density.sum())
    return float(density.std() / density.mean()), float(gini_), float(entropy)


def test_repeats_vary_the_sample_as_va_vae_and_match_the_reference():
    """Repeats draw new pixels and images (so they differ), t-SNE seeds alone do not (PCA init), and the metric is
    the mean of reference repeats on the same inputs."""
    from raysweep.metrics.uniformity import repeat_seeds, tsne_embedding

    rng = np.random.default_rng(1)
    latent = (rng.normal(size=(90, 4, 3, 3)) + rng.integers(0, 3, (90, 1, 1, 1)) * 2.0).astype(np.float32)
    ids = np.arange(90)
    seeds = repeat_seeds(7, 3)
    ref = np.array([va_vae_reference(latent.astype(np.float64), ids, s, 60, tsne_seed=7) for s in seeds])
    assert np.ptp(ref[:, 0]) > 1e-3  # the repeats see different samples
    data = SimpleNamespace(sample_id=ids, label=np.zeros(90, int), fg_mask=None, latent=latent)
    out = run_accumulator(build_metric("uniformity", max_points=60, iterations=250, repeats=3, seed=7), [data])
    got = [out[f"latent/uniformity/{k}"] for k in ("density_cv", "gini", "entropy")]
    assert got == pytest.approx(ref.mean(axis=0), rel=1e-3)
    x = latent.reshape(90, -1)[:40].astype(np.float64)
    np.testing.assert_allclose(tsne_embedding(x, 10.0, 250, 0), tsne_embedding(x, 10.0, 250, 42), atol=1e-6)
