"""Generation / reconstruction scoring: cached reference statistics, our FD against torch-fidelity's own numbers,
batch-size independence, FDr, PRC, CFG views and evaluation cards. A random-init DomainNet is enough: every check
compares two independent computations on the same (deterministic) features."""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from raysweep.config.spec import DatasetSpec
from raysweep.engine.images import load_images, prepare_images
from raysweep.engine.store import Store
from raysweep.features import (
    CARD_PARAM_PREFIX,
    CARD_TAG,
    EvalCard,
    FeatureSpec,
    cached_reference_stats,
    extract_features,
    feature_frechet_distance,
    resolve_feature_network,
    save_domain_net,
    score_images,
)
from raysweep.features.domain_net import DomainNet
from raysweep.features.generation import SMALL_SAMPLE_SHRINKAGE, fd_shrinkage
from raysweep.stages.generation import cfg_views, run_card
from raysweep.stages.scoring import (
    GenerationScorer,
    reconstruction_scores,
    reference_statistics,
    save_cfg_curve,
)

N_TRAIN, N_VAL, FEATURE_DIM = 48, 32, 16


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str, FeatureSpec]:
    root = tmp_path_factory.mktemp("study")
    store = Store(root)
    key = prepare_images(DatasetSpec(image_size=16, num_classes=4, train_size=N_TRAIN, val_size=N_VAL), store)
    torch.manual_seed(0)
    save_domain_net(DomainNet(4, width=8, feature_dim=FEATURE_DIM), root / "domain.pt")
    return store, key, resolve_feature_network("domain", weights_path=root / "domain.pt")


def _generated(seed: int, n: int = N_TRAIN) -> np.ndarray:
    return torch.randint(0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(seed)).to(torch.uint8).numpy()


def test_reference_statistics_are_computed_once_and_reused(tmp_path: Path,
                                                           study: tuple[Store, str, FeatureSpec]) -> None:
    calls = []
    x = np.random.default_rng(0).normal(size=(40, 5))

    def features() -> np.ndarray:
        calls.append(1)
        return x

    first = cached_reference_stats(tmp_path, "k1", features)
    second = cached_reference_stats(tmp_path, "k1", features)
    assert len(calls) == 1
    np.testing.assert_allclose(second.sigma, np.cov(x, rowvar=False), rtol=1e-12)
    np.testing.assert_array_equal(second.mu, first.mu)
    assert second.n == 40 and second.features.shape == (40, 5)
    (tmp_path / "k1.npz").rename(tmp_path / "k2.npz")
    with pytest.raises(ValueError, match="k2.npz: holds statistics for key 'k1'"):
        cached_reference_stats(tmp_path, "k2", features)

    store, key, spec = study
    stats = reference_statistics(store, key, spec, "val")
    [path] = [p for p in store.reference("stats").glob("*.npz") if stats.key in p.name]
    stamp = path.stat().st_mtime_ns
    again = reference_statistics(store, key, spec, "val")
    assert path.stat().st_mtime_ns == stamp and again.n == N_VAL
    np.testing.assert_array_equal(again.sigma, stats.sigma)


def test_features_and_fd_do_not_depend_on_the_batch_size(study: tuple[Store, str, FeatureSpec]) -> None:
    _, _, spec = study
    images, reference = _generated(1, 70), _generated(2, 70)
    ref = extract_features(reference, spec)["pool"]
    per_batch = [extract_features(images, spec, batch_size=b)["pool"] for b in (1, 7, 64)]
    fds = [feature_frechet_distance(f, ref) for f in per_batch]
    for feats, fd in zip(per_batch[1:], fds[1:]):
        torch.testing.assert_close(feats, per_batch[0], rtol=1e-6, atol=1e-6)
        assert fd == pytest.approx(fds[0], rel=1e-6)


def test_generation_scores_match_torch_fidelity_and_independent_fdr(study: tuple[Store, str, FeatureSpec]) -> None:
    store, key, spec = study
    scorer = GenerationScorer(store, key, spec, num_samples=N_TRAIN, seed=0)
    assert [n.name for n in scorer.networks] == ["domain"] and scorer.reference_size == N_TRAIN
    images = _generated(3)
    ours = scorer.score(images)
    train, val = (load_images(store.root, key, s).images for s in ("train", "val"))
    theirs = score_images(images, train, spec, metrics=("fid", "isc", "prc"))
    assert ours["gfid"] == ours["fd_domain"] == pytest.approx(theirs["fid"], rel=1e-5)
    assert ours["is"] == pytest.approx(theirs["is_mean"], rel=1e-6)
    assert (ours["precision"], ours["recall"]) == (theirs["precision"], theirs["recall"])  # same N: no subsample
    feats = {name: extract_features(x, spec)["pool"] for name, x in (("gen", images), ("train", train),
                                                                     ("val", val))}
    expected = feature_frechet_distance(feats["gen"], feats["train"]) / feature_frechet_distance(feats["val"],
                                                                                                 feats["train"])
    assert ours["fdr"] == pytest.approx(expected, rel=1e-6)
    assert scorer.score(train)["gfid"] == pytest.approx(0.0, abs=1e-6)


def test_small_samples_use_the_documented_shrinkage(study: tuple[Store, str, FeatureSpec]) -> None:
    store, key, spec = study
    assert fd_shrinkage(16, 100, 17) == 0.0 and fd_shrinkage(16, 100, 16) == SMALL_SAMPLE_SHRINKAGE
    scorer = GenerationScorer(store, key, spec, num_samples=12, seed=0)
    assert scorer.references["domain"].shrinkage == SMALL_SAMPLE_SHRINKAGE
    assert np.isfinite(scorer.score(_generated(4, 12))["gfid"])
    with pytest.raises(ValueError, match="at least 8"):
        GenerationScorer(store, key, spec, num_samples=4, seed=0)


def test_rfid_matches_torch_fidelity_and_carries_a_reconstruction_card(
        study: tuple[Store, str, FeatureSpec]) -> None:
    store, key, spec = study
    val = load_images(store.root, key, "val").images
    noisy = np.clip(val.astype(np.int16) + np.random.default_rng(5).integers(-40, 40, val.shape), 0, 255)
    scores, card = reconstruction_scores(store, key, spec, noisy.astype(np.uint8))
    assert scores["rfid"] == pytest.approx(score_images(noisy.astype(np.uint8), val, spec, ("fid",))["fid"],
                                           rel=1e-5)
    assert card.kind == "reconstruction" and card.reference_split == "val" and card.reference_size == N_VAL
    assert card.feature_weights_sha256 == spec.weights_sha256


def test_cfg_views_report_nocfg_best_and_every_grid_scale() -> None:
    scores = {1.0: {"gfid": 9.0, "is": 1.1}, 1.5: {"gfid": 4.0, "is": 2.0}, 2.0: {"gfid": 6.0, "is": 3.0}}
    m = cfg_views(scores, [1.5, 2.0])
    assert m["gen/nocfg/gfid"] == 9.0 and "gen/cfg1/gfid" not in m
    assert m["gen/best/cfg_scale"] == 1.5 and m["gen/best/gfid"] == 4.0 and m["gen/best/is"] == 2.0
    assert m["gen/cfg2/is"] == 3.0 and m["gen/cfg1.5/gfid"] == 4.0


def test_cfg_curve_is_a_png(tmp_path: Path) -> None:
    path = save_cfg_curve({1.0: 5.0, 1.5: 3.0, 2.0: 4.0}, 1.5, tmp_path / "cfg_curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_card_hash_params_and_tag(study: tuple[Store, str, FeatureSpec]) -> None:
    from raysweep.config.spec import EvaluationSpec

    store, key, spec = study
    scorer = GenerationScorer(store, key, spec, num_samples=N_TRAIN, seed=0)
    card = run_card(scorer, key, EvaluationSpec(cfg_scales=[1.0, 2.0], num_samples=N_TRAIN), seed=3,
                    device=torch.device("cpu"))
    assert card.kind == "generation" and card.cfg_scales == "1,2" and card.seed == 3
    assert card.fd_networks == f"domain:{spec.weights_sha256[:12]}" and card.reference_size == N_TRAIN
    params = card.params()
    assert set(params) == {f"{CARD_PARAM_PREFIX}{f.name}" for f in fields(EvalCard)}
    assert params["card.steps"] == "50" and params["card.guidance_interval"] == "none"
    assert card.tags() == {CARD_TAG: card.hash()} and CARD_TAG == "raysweep.eval_card_hash"
    assert run_card(scorer, key, EvaluationSpec(cfg_scales=[1.0, 2.0], num_samples=N_TRAIN), seed=3,
                    device=torch.device("cpu")) == card
    for change in ({"steps": 250}, {"precision": "bfloat16"}, {"reference_split": "val"}, {"cfg_scales": "1,4"}):
        assert replace(card, **change).hash() != card.hash()
