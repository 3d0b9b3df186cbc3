"""Feature-network registry: lookups, local-weights resolution, and clear errors instead of downloads."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from raysweep.features import FEATURE_NETWORKS, WEIGHTS_DIR_ENV, resolve_feature_network

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture
def offline_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty $RAYSWEEP_WEIGHTS_DIR and an empty torch home, so no real cache on this machine is found."""
    weights, torch_home = tmp_path / "weights", tmp_path / "torch-home"
    weights.mkdir()
    torch_home.mkdir()
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(weights))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return weights, torch_home


def test_unknown_name_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="unknown feature network 'dino'.*domain.*inception-v3-compat"):
        resolve_feature_network("dino")


@pytest.mark.parametrize("name", sorted(FEATURE_NETWORKS))
def test_declared_layers_are_provided_by_the_torch_fidelity_extractor(name: str) -> None:
    net = FEATURE_NETWORKS[name]
    provided = FEATURE_EXTRACTORS_REGISTRY[net.extractor].get_provided_features_list()
    assert net.layers.fid in provided
    assert net.layers.isc is None or net.layers.isc in provided


def test_missing_explicit_inception_weights_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / INCEPTION_FILE
    with pytest.raises(FileNotFoundError, match="never downloads") as err:
        resolve_feature_network("inception-v3-compat", weights_path=missing)
    assert str(missing) in str(err.value)


def test_missing_inception_weights_name_every_place_looked_and_download_nothing(
        offline_dirs: tuple[Path, Path]) -> None:
    weights, torch_home = offline_dirs
    with pytest.raises(FileNotFoundError) as err:
        resolve_feature_network("inception-v3-compat")
    message = str(err.value)
    assert str(weights / INCEPTION_FILE) in message
    assert str(torch_home / "hub" / "checkpoints" / INCEPTION_FILE) in message
    assert WEIGHTS_DIR_ENV in message
    assert not any(torch_home.iterdir()) and not any(weights.iterdir())


def test_weights_found_in_the_weights_dir_are_hashed(offline_dirs: tuple[Path, Path]) -> None:
    weights, _ = offline_dirs
    payload = b"not really inception, but resolution only finds and hashes the file"
    (weights / INCEPTION_FILE).write_bytes(payload)
    spec = resolve_feature_network("inception-v3-compat")
    assert spec.weights_path == weights / INCEPTION_FILE
    assert spec.weights_sha256 == hashlib.sha256(payload).hexdigest()
    assert (spec.extractor, spec.layers.fid, spec.layers.isc) == ("inception-v3-compat", "2048", "logits_unbiased")


def test_torch_hub_cache_is_searched_after_the_weights_dir(offline_dirs: tuple[Path, Path]) -> None:
    _, torch_home = offline_dirs
    cached = torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"vgg")
    assert resolve_feature_network("vgg16").weights_path == cached


def test_explicit_path_wins_and_is_not_replaced_by_a_search(offline_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    weights, _ = offline_dirs
    (weights / "domain.pt").write_bytes(b"in the search dir")
    explicit = tmp_path / "mine.pt"
    explicit.write_bytes(b"explicit")
    assert resolve_feature_network("domain", weights_path=explicit).weights_path == explicit
    with pytest.raises(FileNotFoundError, match="gone.pt"):
        resolve_feature_network("domain", weights_path=tmp_path / "gone.pt")
