"""LNC and the linear probe on clusters, shuffled labels, masks, and against a brute-force kNN."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from raysweep.metrics import LatentNeighbourConsistency, LinearProbe, knn_label_agreement, run_accumulator
from raysweep.metrics.semantic import stratified_split

C, H, W, CLASSES = 4, 8, 8, 4
LNC_KEYS = ("latent/semantic/lnc@5", "latent/semantic/lnc@10")
PROBE_KEY = "latent/semantic/linear_probe"


def clustered(per_class: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Latents [N,C,H,W] = class centre (constant over space) + noise, and labels [N]."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * rng.normal(size=(CLASSES, C))
    labels = np.repeat(np.arange(CLASSES), per_class)
    latent = centres[labels][:, :, None, None] + spread * rng.normal(size=(len(labels), C, H, W))
    return latent.astype(np.float32), labels


def run(metric, latent: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> dict:
    batch = SimpleNamespace(sample_id=np.arange(len(labels)), label=labels, latent=latent, fg_mask=mask)
    return run_accumulator(metric, [batch])


def test_lnc_is_one_on_well_separated_clusters():
    out = run(LatentNeighbourConsistency(), *clustered(25, 0.5, seed=0))
    assert [out[k] for k in LNC_KEYS] == [1.0, 1.0]


def test_lnc_is_chance_on_shuffled_labels():
    latent, labels = clustered(100, 0.5, seed=1)
    shuffled = np.random.default_rng(1).permutation(labels)
    chance = (100 - 1) / (len(labels) - 1)  # a random other sample shares the label
    out = run(LatentNeighbourConsistency(), latent, shuffled)
    for key in LNC_KEYS:
        assert out[key] == pytest.approx(chance, abs=0.05)


def masked_scene(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The label lives only in a 3x3 foreground patch; the background is loud label-free noise."""
    rng = np.random.default_rng(seed)
    n = 200
    labels = rng.integers(0, CLASSES, n)
    centres = 3.0 * rng.normal(size=(CLASSES, C))
    latent = 10.0 * rng.normal(size=(n, C, H, W))
    mask = np.zeros((n, H, W), dtype=np.uint8)
    for i, (r, c) in enumerate(rng.integers(0, H - 3, size=(n, 2))):
        mask[i, r:r + 3, c:c + 3] = 1
        latent[i, :, r:r + 3, c:c + 3] = centres[labels[i]][:, None, None] + 0.1 * rng.normal(size=(C, 3, 3))
    return latent.astype(np.float32), labels, mask


def test_foreground_pooling_finds_the_label_that_whole_image_pooling_drowns():
    latent, labels, mask = masked_scene(seed=2)
    with_mask = run(LatentNeighbourConsistency(), latent, labels, mask)
    without = run(LatentNeighbourConsistency(use_mask=False), latent, labels, mask)
    no_mask_given = run(LatentNeighbourConsistency(), latent, labels, None)
    for key in LNC_KEYS:
        assert with_mask[key] > 0.9
        assert with_mask[key] - without[key] > 0.4
        assert without[key] == no_mask_given[key]


@pytest.mark.parametrize("metric", [LatentNeighbourConsistency(), LinearProbe()], ids=["lnc", "linear_probe"])
def test_per_channel_rescaling_changes_nothing_because_features_are_standardised(metric):
    latent, labels = clustered(30, 60.0, seed=5)  # overlapping clusters (pooled noise ~ centre spread)
    scaled = latent * np.array([128.0, 1 / 64, 1.0, 4.0], np.float32)[:, None, None]  # powers of two: exact
    reference = run(metric, latent, labels)
    assert run(metric, scaled, labels) == reference
    assert 0.3 < min(reference.values()) < 1.0


def test_knn_agreement_matches_a_brute_force_sort():
    rng = np.random.default_rng(3)
    features, labels = rng.normal(size=(60, 5)), rng.integers(0, 3, 60)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    for k in (1, 5, 10):
        neighbours = np.argsort(-sims, axis=1)[:, :k]
        expected = np.mean([np.mean(labels[neighbours[i]] == labels[i]) for i in range(60)])
        assert knn_label_agreement(features, labels, k) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(knn_label_agreement(features[:5], labels[:5], 5))


def test_linear_probe_separates_clusters_and_falls_to_chance_on_shuffled_labels():
    latent, labels = clustered(50, 0.5, seed=4)
    assert run(LinearProbe(), latent, labels)[PROBE_KEY] == 1.0
    noise = np.random.default_rng(4).normal(size=latent.shape).astype(np.float32)
    assert run(LinearProbe(), noise, labels)[PROBE_KEY] < 1 / CLASSES + 0.2


def test_stratified_split_holds_out_a_fixed_fraction_of_every_class():
    labels = np.array([0] * 50 + [1] * 20 + [2])
    test = stratified_split(labels, 0.2, seed=0)
    assert [int(test[labels == k].sum()) for k in (0, 1, 2)] == [10, 4, 0]
    assert np.array_equal(test, stratified_split(labels, 0.2, seed=0))
    assert not np.array_equal(test, stratified_split(labels, 0.2, seed=1))
