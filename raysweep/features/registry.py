"""Feature networks for FID / IS / KID / PRC / FD, each declaring its torch-fidelity extractor, the layers each
metric reads, and which local weight file it needs. No entry ever downloads.

Adding a network: one `FeatureNetwork` entry. Kinds: `torch-fidelity` (a builtin extractor that accepts a local
weights path), `domain` (trained by stage 0 on the study's images: the DomainNet classifier, and the
DomainAutoencoder, the second scorer no regularizer aligns to). torchvision / timm / open_clip backbones would be a
new kind with its own extractor class in `fidelity.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from raysweep.features.weights import find_weights, weights_sha256

Kind = Literal["torch-fidelity", "domain"]
DOMAIN_EXTRACTOR = "raysweep-domain"  # our torch-fidelity extractor names, registered in fidelity.py
AUTOENCODER_EXTRACTOR = "raysweep-domain-ae"


@dataclass(frozen=True)
class FeatureLayers:
    """torch-fidelity feature layer names: `fid` also serves KID, PRC and FD; `isc` is None without a classifier."""

    fid: str
    isc: str | None


@dataclass(frozen=True)
class FeatureNetwork:
    name: str
    kind: Kind
    extractor: str                  # name in torch-fidelity's FEATURE_EXTRACTORS_REGISTRY
    layers: FeatureLayers
    weights_files: tuple[str, ...]  # accepted file names in the weights search dirs, first found wins
    hint: str                       # where such a file comes from, for the not-found error
    resize: str                     # what the extractor does to the uint8 input before the net (for eval cards)


@dataclass(frozen=True)
class FeatureSpec:
    """A resolved feature network: everything a scorer needs, and the hash that pins the weights it used."""

    name: str
    extractor: str
    layers: FeatureLayers
    weights_path: Path
    weights_sha256: str


FEATURE_NETWORKS: dict[str, FeatureNetwork] = {net.name: net for net in (
    FeatureNetwork(
        "inception-v3-compat", "torch-fidelity", "inception-v3-compat", FeatureLayers("2048", "logits_unbiased"),
        ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"),
        "It is the FID Inception-v3 of pytorch-fid / torch-fidelity, published as a release asset of "
        "github.com/toshas/torch-fidelity (v0.2.0) and github.com/mseitzer/pytorch-fid (fid_weights); copy it "
        "from a machine with network access.",
        "bilinear resize to 299x299 (TF1-compatible), no crop"),
    FeatureNetwork(
        "vgg16", "torch-fidelity", "vgg16", FeatureLayers("fc2_relu", None), ("vgg16-397923af.pth",),
        "It is torchvision's ImageNet VGG16 state dict (torchvision.models.VGG16_Weights.IMAGENET1K_V1); copy it "
        "from a machine with network access.",
        "bilinear resize to 224x224 (TF1-compatible), no crop, ImageNet mean/std"),
    FeatureNetwork(
        "domain", "domain", DOMAIN_EXTRACTOR, FeatureLayers("pool", "logits"), ("domain.pt",),
        "It is the DomainNet that stage 0 trains on the study's images (train_domain_net + save_domain_net).",
        "none: native resolution, uint8 -> [-1, 1]"),
    FeatureNetwork(
        "domain-ae", "domain", AUTOENCODER_EXTRACTOR, FeatureLayers("pool", None), ("domain_ae.pt",),
        "It is the DomainAutoencoder that stage 0 trains on the study's images (train_domain_autoencoder).",
        "none: native resolution, uint8 -> [-1, 1]"),
)}


def feature_network(name: str) -> FeatureNetwork:
    if name not in FEATURE_NETWORKS:
        raise ValueError(f"unknown feature network '{name}'; allowed: {', '.join(sorted(FEATURE_NETWORKS))}")
    return FEATURE_NETWORKS[name]


def resolve_feature_network(name: str, weights_path: str | Path | None = None) -> FeatureSpec:
    """Find the network's local weights (the explicit path, else the search dirs) and hash them.

    ValueError for an unknown name; FileNotFoundError, naming every path tried, when the weights are not there."""
    net = feature_network(name)
    path = find_weights(name, net.weights_files, weights_path, net.hint)
    return FeatureSpec(name, net.extractor, net.layers, path, weights_sha256(path))
