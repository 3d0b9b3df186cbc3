"""DomainNet end to end: training on a synthetic labelled set, checkpoints, the torch-fidelity extractor, and
generation scores through real torch-fidelity."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from raysweep.features import (
    MIN_SCORE_SAMPLES,
    DomainNet,
    FeatureLayers,
    FeatureSpec,
    extract_features,
    feature_frechet_distance,
    load_domain_checkpoint,
    load_domain_net,
    resolve_feature_network,
    sample_settings,
    save_domain_net,
    score_images,
    train_domain_net,
)

COLOURS = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]])  # red, blue
SIZE = 16


def blobs(n: int, seed: int, background: float = -0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """float [n,3,16,16] in [-1, 1] and labels [n] in 0..3: a Gaussian blob whose colour (red/blue) and vertical
    half (top/bottom) code the class, at a random horizontal position, on a noisy grey background. Horizontal
    flips keep the class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(4, (n,), generator=g)
    colour, bottom = labels % 2, labels // 2
    cy = (0.28 + 0.44 * bottom + 0.08 * (torch.rand(n, generator=g) - 0.5)) * SIZE
    cx = (0.25 + 0.5 * torch.rand(n, generator=g)) * SIZE
    radius = (0.1 + 0.05 * torch.rand(n, generator=g)) * SIZE
    grid = torch.arange(SIZE) + 0.5
    d2 = (grid[None, :, None] - cy[:, None, None]) ** 2 + (grid[None, None, :] - cx[:, None, None]) ** 2
    weight = torch.exp(-d2 / (2 * radius[:, None, None] ** 2))[:, None]  # (n, 1, H, W)
    images = background + weight * (COLOURS[colour][:, :, None, None] - background)
    return (images + 0.1 * torch.randn(n, 3, SIZE, SIZE, generator=g)).clamp(-1, 1), labels


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return ((images + 1) * 127.5).round().to(torch.uint8)


def train(seed: int = 0) -> tuple[DomainNet, dict[str, float]]:
    x, y = blobs(256, seed=10)
    return train_domain_net(x, y, steps=80, batch_size=32, lr=3e-3, seed=seed, val=blobs(128, seed=11),
                            width=8, feature_dim=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[DomainNet, dict[str, float], FeatureSpec]:
    model, stats = train()
    path = tmp_path_factory.mktemp("domain") / "domain.pt"
    save_domain_net(model, path, meta={"dataset": "blobs", **stats})
    return model, stats, resolve_feature_network("domain", weights_path=path)


def test_trains_to_high_validation_accuracy(trained: tuple[DomainNet, dict[str, float], FeatureSpec]) -> None:
    _, stats, _ = trained
    assert stats["val_accuracy"] > 0.9 and stats["train_accuracy"] > 0.9


def test_training_is_deterministic_under_a_seed(trained: tuple[DomainNet, dict[str, float], FeatureSpec]) -> None:
    model, _, _ = trained
    again, _ = train(seed=0)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_holds_out_a_validation_split_when_none_is_given() -> None:
    x, y = blobs(40, seed=3)
    _, stats = train_domain_net(x, y, steps=2, batch_size=8, seed=0, val_fraction=0.25, width=4, feature_dim=8)
    assert {k: stats[k] * 10 % 1 for k in ("train_accuracy", "val_accuracy")} == {"train_accuracy": 0.0,
                                                                                 "val_accuracy": 0.0}  # 30 / 10


@pytest.mark.parametrize("size", [16, 24, 33])
def test_views_have_the_documented_shapes_and_pooling(size: int) -> None:
    torch.manual_seed(0)
    net = DomainNet(5, width=4, feature_dim=12).eval()
    x = torch.rand(3, 3, size, size) * 2 - 1
    tokens = net.patch_tokens(x)
    assert tokens.shape == (3, 12, math.ceil(math.ceil(size / 2) / 2), math.ceil(math.ceil(size / 2) / 2))
    pooled, logits = net.features_and_logits(x)
    torch.testing.assert_close(pooled, tokens.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, pooled @ net.head.weight.T + net.head.bias)
    assert torch.equal(net(x), logits)


def test_rejects_images_smaller_than_16() -> None:
    with pytest.raises(ValueError, match=">= 16"):
        DomainNet(3).patch_tokens(torch.zeros(1, 3, 8, 8))


def test_checkpoint_round_trip(trained: tuple[DomainNet, dict[str, float], FeatureSpec], tmp_path: Path) -> None:
    model, stats, spec = trained
    loaded, meta = load_domain_checkpoint(spec.weights_path)
    assert meta == {"dataset": "blobs", **stats} and not loaded.training
    x, _ = blobs(8, seed=5)
    assert torch.equal(loaded(x), model(x))
    blob = torch.load(spec.weights_path, weights_only=True)
    assert blob["config"] == {"num_classes": 4, "width": 8, "feature_dim": 16}
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a DomainNet checkpoint"):
        load_domain_net(tmp_path / "other.pt")


def test_extractor_features_match_the_model_and_ignore_batch_size(
        trained: tuple[DomainNet, dict[str, float], FeatureSpec]) -> None:
    model, _, spec = trained
    images = to_uint8(blobs(70, seed=6)[0])
    with torch.no_grad():
        pooled, logits = model.features_and_logits(images.float() / 127.5 - 1)
    per_batch = [extract_features(images, spec, layers=["pool", "logits"], batch_size=b) for b in (1, 7, 64)]
    for feats in per_batch:
        torch.testing.assert_close(feats["pool"], pooled, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(feats["logits"], logits, rtol=1e-6, atol=1e-6)


def test_scores_through_torch_fidelity(trained: tuple[DomainNet, dict[str, float], FeatureSpec]) -> None:
    _, _, spec = trained
    a = to_uint8(blobs(100, seed=20)[0])
    a_again = to_uint8(blobs(100, seed=21)[0])
    shifted = to_uint8(blobs(100, seed=22, background=0.2)[0])
    same = score_images(a, a, spec, metrics=("fid", "isc"))
    fresh = score_images(a_again, a, spec, metrics=("fid",))
    moved = score_images(shifted, a, spec, metrics=("fid",))
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    assert moved["fid"] > 2 * fresh["fid"] > 0
    assert math.isfinite(same["is_mean"]) and same["is_mean"] >= 1.0 and same["is_std"] >= 0.0
    # four balanced, well-separated classes: IS approaches its maximum, the number of classes
    assert 3.0 < same["is_mean"] <= 4.0 + 1e-9
    ours = feature_frechet_distance(extract_features(a_again, spec)["pool"], extract_features(a, spec)["pool"])
    assert fresh["fid"] == pytest.approx(ours, rel=1e-5)


def test_kid_and_precision_recall(trained: tuple[DomainNet, dict[str, float], FeatureSpec]) -> None:
    _, _, spec = trained
    a = to_uint8(blobs(60, seed=30)[0])
    shifted = to_uint8(blobs(60, seed=31, background=0.2)[0])
    same = score_images(a, a, spec, metrics=("kid", "prc"))
    moved = score_images(shifted, a, spec, metrics=("kid", "prc"))
    assert same["precision"] == same["recall"] == 1.0  # every sample lies inside its own k-NN ball
    assert moved["kid_mean"] > same["kid_mean"]
    assert moved["precision"] < 1.0
    assert set(moved) == {"kid_mean", "kid_std", "precision", "recall", "f_score"}


def test_sample_settings_follow_the_sample_counts() -> None:
    assert sample_settings(500, 500) == {"isc_splits": 10, "kid_subsets": 100, "kid_subset_size": 500}
    assert sample_settings(64, 2000)["isc_splits"] == 1
    assert sample_settings(120, 100) == {"isc_splits": 2, "kid_subsets": 100, "kid_subset_size": 100}
    assert sample_settings(50_000, 50_000)["kid_subset_size"] == 1000
    with pytest.raises(ValueError, match=f"at least {MIN_SCORE_SAMPLES}"):
        sample_settings(MIN_SCORE_SAMPLES - 1, 100)


def test_score_images_rejects_bad_requests(trained: tuple[DomainNet, dict[str, float], FeatureSpec]) -> None:
    _, _, spec = trained
    a = to_uint8(blobs(20, seed=40)[0])
    with pytest.raises(ValueError, match="fid, isc, kid, prc"):
        score_images(a, a, spec, metrics=("fid", "lpips"))
    with pytest.raises(ValueError, match="uint8"):
        score_images(a.float(), a, spec)
    with pytest.raises(ValueError, match="at least"):
        score_images(a[:3], a, spec)
    no_classifier = FeatureSpec("vgg16", "vgg16", FeatureLayers("fc2_relu", None), spec.weights_path, "")
    with pytest.raises(ValueError, match="no classifier"):
        score_images(a, a, no_classifier, metrics=("isc",))
    assert np.isfinite(score_images(a.numpy(), a.numpy(), spec, metrics=("fid",))["fid"])


def test_blur_check_is_the_fd_the_scorer_computes(trained: tuple[DomainNet, dict[str, float], FeatureSpec]) -> None:
    """The check's numbers are torch-fidelity's features of the uint8 images, by an independent blur (scipy)."""
    from scipy.ndimage import gaussian_filter

    from raysweep.features.domain_train import blur_check

    _, _, spec = trained
    x, _ = blobs(128, seed=11)
    a, b = to_uint8(x[0::2]), to_uint8(x[1::2])
    # the same blur by scipy: sigma 1, truncated at radius 2 (truncate = 2.0 sigmas), replicate ("nearest") edges
    soft = torch.from_numpy(gaussian_filter(x[0::2].numpy().astype(np.float64), sigma=(0, 0, 1, 1), truncate=2.0,
                                            mode="nearest")).float()
    feats = {name: extract_features(imgs, spec)[spec.layers.fid] for name, imgs in
             (("a", a), ("b", b), ("soft", to_uint8(soft)))}
    got = blur_check(load_domain_net(spec.weights_path), x)
    assert got["check_fd_real_halves"] == pytest.approx(feature_frechet_distance(feats["a"], feats["b"]), rel=1e-4)
    assert got["check_fd_blurred"] == pytest.approx(feature_frechet_distance(feats["soft"], feats["b"]), rel=1e-3)
    # KID, recorded beside FD because it has no sample-size bias, on the scorer's features of the same halves
    from raysweep.features.sample_bias import kid

    assert got["check_kid_real_halves"] == pytest.approx(kid(feats["a"], feats["b"])[0], rel=1e-3, abs=1e-6)
    assert got["check_kid_blurred"] == pytest.approx(kid(feats["soft"], feats["b"])[0], rel=1e-2, abs=1e-4)
    assert got["check_half_size"] == 64
