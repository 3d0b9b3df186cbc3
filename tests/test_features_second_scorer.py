"""The second scorer (DomainAutoencoder, `domain-ae`): it learns, its features see blur where real halves agree,
the torch-fidelity path computes the same features, and both scorers rank a blurred tokenizer's decoded images
worse than sharp ones through the run's own scorer (`GenerationScorer` with the extra scorer), whose floor and KID
match independent computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raysweep.config.spec import DatasetSpec, ScorerSpec
from raysweep.engine.images import load_images, prepare_images
from raysweep.engine.store import Store
from raysweep.features import (
    DomainAutoencoder,
    FeatureSpec,
    extract_features,
    feature_frechet_distance,
    load_domain_checkpoint,
    resolve_feature_network,
    save_domain_net,
    train_domain_autoencoder,
    train_domain_net,
)
from raysweep.features.domain_net import DomainNet
from raysweep.features.domain_train import gaussian_blur
from raysweep.features.generation import fd_shrinkage, real_halves_check
from raysweep.features.sample_bias import kid
from raysweep.stages.scoring import (
    GenerationScorer,
    extra_scorers,
    reference_statistics,
    study_trained_weights,
    to_uint8,
)

AE_STEPS = 300  # the default of evaluation.scorers


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str, dict[str, float]]:
    """A shapes study (16 px) with both study-trained networks where stage 0 puts them."""
    root = tmp_path_factory.mktemp("study")
    store = Store(root)
    key = prepare_images(DatasetSpec(image_size=16, num_classes=4, train_size=600, val_size=300), store)
    train, val = (load_images(root, key, s) for s in ("train", "val"))
    domain, _ = train_domain_net(train.as_float(), train.labels, steps=40, width=16, feature_dim=32, seed=0,
                                 val=(val.as_float(), val.labels))
    save_domain_net(domain, root / "domain.pt")
    ae, stats = train_domain_autoencoder(train.as_float(), steps=AE_STEPS, val=val.as_float())
    path = study_trained_weights(store, key, ScorerSpec(name="domain-ae"))
    path.parent.mkdir(parents=True)
    save_domain_net(ae, path, meta=stats)
    return store, key, stats


def test_the_autoencoder_learns_and_its_features_see_blur(study: tuple[Store, str, dict[str, float]]) -> None:
    store, key, stats = study
    val = load_images(store.root, key, "val").as_float()
    mean_image_mse = float(((val - val.mean(0)) ** 2).mean())  # what a network that learned nothing would score
    assert stats["val_mse"] < mean_image_mse / 3
    assert stats["check_fd_blurred"] > 2.5 * stats["check_fd_real_halves"]  # blur is seen beyond FD's bias at N = 150
    assert stats["check_kid_blurred"] > stats["check_kid_real_halves"] + 0.01
    model, meta = load_domain_checkpoint(study_trained_weights(store, key, ScorerSpec(name="domain-ae")),
                                         DomainAutoencoder)
    assert meta["val_mse"] == stats["val_mse"] and model.feature_dim == 96
    with pytest.raises(ValueError, match="not a DomainNet checkpoint"):  # the two study-trained formats differ
        load_domain_checkpoint(study_trained_weights(store, key, ScorerSpec(name="domain-ae")), DomainNet)


def test_the_torch_fidelity_extractor_gives_the_networks_own_features(
        study: tuple[Store, str, dict[str, float]]) -> None:
    store, key, _ = study
    path = study_trained_weights(store, key, ScorerSpec(name="domain-ae"))
    spec = resolve_feature_network("domain-ae", weights_path=path)
    images = load_images(store.root, key, "val").images[:40]
    ours = load_domain_checkpoint(path, DomainAutoencoder)[0].features(torch.from_numpy(images).float() / 127.5 - 1)
    torch.testing.assert_close(extract_features(images, spec)["pool"], ours, rtol=1e-5, atol=1e-5)
    assert spec.layers.isc is None  # no classifier: no IS from this scorer


def _scorers(store: Store, key: str) -> tuple[FeatureSpec, FeatureSpec, dict[str, str]]:
    extras = extra_scorers(store, key, [ScorerSpec(name="domain-ae"), ScorerSpec(name="inception-v3-compat")],
                           "domain")
    [ae] = extras.networks
    return resolve_feature_network("domain", weights_path=store.root / "domain.pt"), ae, dict(extras.skipped)


def test_inception_without_weights_path_is_skipped_with_the_reason(study: tuple[Store, str, dict[str, float]]) -> None:
    store, key, _ = study
    _, ae, skipped = _scorers(store, key)
    assert ae.name == "domain-ae" and list(skipped) == ["inception-v3-compat"]
    assert "no weights_path" in skipped["inception-v3-compat"] and "never downloads" in skipped["inception-v3-compat"]
    with pytest.raises(FileNotFoundError, match="local weights not found"):  # a given path is used, or fails
        extra_scorers(store, key, [ScorerSpec(name="vgg16", weights_path=str(store.root / "nope.pth"))], "domain")


def test_both_scorers_rank_a_blurred_tokenizer_worse_than_a_sharp_one(
        study: tuple[Store, str, dict[str, float]]) -> None:
    """Decoded images of two tokenizers of the val split: sharp (every pixel off by at most 2 levels) and blurred
    (σ = 1). The run's scorer puts the blurred one behind on both networks' gFID and on the extra's KID (the
    autoencoder by a smaller factor than the classifier: its features carry colour as much as edges)."""
    store, key, _ = study
    domain, ae, _ = _scorers(store, key)
    val = load_images(store.root, key, "val")
    noise = torch.randint(-2, 3, val.images.shape, generator=torch.Generator().manual_seed(0))
    sharp = (torch.from_numpy(val.images).int() + noise).clamp(0, 255).to(torch.uint8).numpy()
    blurred = to_uint8(gaussian_blur(val.as_float(), 1.0))
    scorer = GenerationScorer(store, key, domain, num_samples=len(val), seed=0, extras=[ae])
    s, b = scorer.score(sharp), scorer.score(blurred)
    # measured (sharp, blurred): gFID (0.018, 0.19), gFID@domain-ae (1.28, 2.01), KID@domain-ae (-0.024, 0.050)
    assert b["gfid"] > 3 * s["gfid"] and b["gfid@domain-ae"] > 1.3 * s["gfid@domain-ae"] > 0
    assert b["kid@domain-ae"] > s["kid@domain-ae"] + 0.03
    assert s["fd_floor@domain-ae"] == b["fd_floor@domain-ae"]  # the floor is the scorer's, not the run's

    # the extra scorer's floor and KID, computed independently from the features of the two real splits
    f_train, f_val = (extract_features(load_images(store.root, key, split).images, ae)["pool"]
                      for split in ("train", "val"))
    assert f_val.shape[1] == 96 and fd_shrinkage(96, len(val), len(f_train), len(f_val)) == 0  # no shrinkage
    assert s["fd_floor@domain-ae"] == pytest.approx(feature_frechet_distance(f_val, f_train), rel=1e-6)
    f_blurred = extract_features(blurred, ae)["pool"]
    assert b["kid@domain-ae"] == pytest.approx(kid(f_blurred, f_train)[0], rel=1e-6)

    # its real-halves check (stage 0): the floor is the run's, the halves' FD the one of the features
    check = real_halves_check(*(reference_statistics(store, key, ae, s) for s in ("train", "val")))
    assert check["fd_floor"] == pytest.approx(s["fd_floor@domain-ae"], rel=1e-9)
    assert check["half_size"] == 150
    np.testing.assert_allclose(check["fd_real_halves"], feature_frechet_distance(f_val[0::2], f_val[1::2]),
                               rtol=1e-5)
