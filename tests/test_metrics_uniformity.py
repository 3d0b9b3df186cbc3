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
    out = run_accumulator(build_metric("uniformity", max_points=40, iterations=250, seeds=[0]), [data])
    assert out["latent/uniformity/points"] == 40.0
    assert out["latent/uniformity/perplexity"] == 13.0  # (40 - 1) / 3: scikit-learn needs perplexity < N
    assert 0.0 < out["latent/uniformity/gini"] < 1.0 and 0.0 < out["latent/uniformity/entropy"] <= 1.0
