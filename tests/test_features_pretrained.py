"""Pretrained feature-network registry: local files only, clear errors, normalisation and patch-token readout
checked against the networks' own forward passes (torchvision architectures with random weights, saved to tmp)."""
from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch
from torchvision.models import resnet18
from torchvision.models.vision_transformer import VisionTransformer

from raysweep.features.domain_net import DomainNet, save_domain_net
from raysweep.features.pretrained import (
    PRETRAINED,
    FeatureEncoder,
    build_network,
    load_feature_encoder,
    pretrained_network,
)

TABLE1_ENCODERS = ["clip-l", "cradio-b", "cradio-l", "dinov2-b", "dinov2-l", "dinov3-b", "dinov3-l", "langpe-l",
                   "mae-l", "mocov3-l", "pe-b", "pe-l", "spatialpe-b", "spatialpe-l", "webssl-300m"]


def images(n: int, size: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_registry_covers_table1_and_lists_names_on_a_typo() -> None:
    assert set(TABLE1_ENCODERS) <= PRETRAINED.keys()
    with pytest.raises(ValueError, match="unknown feature network 'dinov9'.*dinov2-b.*domain"):
        pretrained_network("dinov9")


def test_missing_weights_name_every_path_and_the_source(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RAYSWEEP_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'resnet50-11ad3fa6.pth'}.*ResNet50_Weights"):
        load_feature_encoder("tv-resnet50")


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None,
                    reason="checks the error shown when timm is absent; timm is installed (the test / features extra)")
def test_optional_library_missing_is_a_clear_error(tmp_path) -> None:
    weights = tmp_path / "w.pth"
    torch.save({}, weights)
    with pytest.raises(ImportError, match="optional library 'timm'.*pip install timm"):
        load_feature_encoder("dinov2-b", weights)


TIMM_ENTRIES = [net for net in PRETRAINED.values() if net.library == "timm"]
UNTAGGED = {"mocov3-l"}  # timm has the architecture but not the weights (MoCo v3 keys are converted locally)
needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None,
                                reason="timm is not installed: `pip install -c constraints.txt -e .[features]`")


@needs_timm
@pytest.mark.parametrize("net", TIMM_ENTRIES, ids=[net.name for net in TIMM_ENTRIES])
def test_timm_entry_matches_timm(net) -> None:
    """The name is a timm pretrained tag (or architecture), built on the meta device at the entry's input size;
    its prefix tokens, normalisation and patch grid are timm's."""
    import timm

    if net.name in UNTAGGED:
        assert "." not in net.arch and net.arch in timm.list_models()
    else:
        assert net.arch in timm.list_pretrained()
    with torch.device("meta"):
        model = timm.create_model(net.arch, pretrained=False, num_classes=0, img_size=net.input_size)
        tokens = model.forward_features(torch.empty(1, 3, net.input_size, net.input_size))
    grid = net.input_size // model.patch_embed.patch_size[0]
    assert model.num_prefix_tokens == net.prefix_tokens
    assert tokens.shape[1] == net.prefix_tokens + grid * grid
    if net.name not in UNTAGGED:
        assert (tuple(model.pretrained_cfg["mean"]), tuple(model.pretrained_cfg["std"])) == net.norm


@needs_timm
def test_timm_weights_load_from_a_local_file_at_the_entry_size(tmp_path) -> None:
    """A random tiny timm ViT saved at 224 px as the 'local weights file': loaded by name at 32 px (position
    embeddings resampled by timm), patch tokens are its forward_features without the class token."""
    import timm

    torch.manual_seed(0)
    arch = "vit_tiny_patch16_224.augreg_in21k"
    path = tmp_path / "vit_tiny.pth"
    saved = timm.create_model(arch, pretrained=False).state_dict()
    torch.save(saved, path)
    net = dataclasses.replace(PRETRAINED["dinov2-b"], arch=arch, input_size=32, norm=((0.5,) * 3, (0.5,) * 3))
    encoder = FeatureEncoder(net, build_network(net, path))
    torch.testing.assert_close(encoder.model.blocks[0].attn.qkv.weight, saved["blocks.0.attn.qkv.weight"])
    assert encoder.model.pos_embed.shape == (1, 1 + 2 * 2, 192)
    x = images(2, 32)
    with torch.no_grad():
        expected = encoder.model.forward_features(encoder.prepare(x))[:, 1:]
    torch.testing.assert_close(encoder.patch_tokens(x), expected.transpose(1, 2).reshape(2, 192, 2, 2))


def test_torchvision_resnet_from_a_local_file(tmp_path) -> None:
    """A randomly initialised resnet18 saved as the 'local weights file': loaded by name, the last feature map."""
    torch.manual_seed(0)
    reference = resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = dataclasses.replace(PRETRAINED["tv-resnet50"], name="tv-resnet18", arch="resnet18", input_size=64)
    encoder = FeatureEncoder(net, build_network(net, path))
    x = images(2, 32)
    prepared = encoder.prepare(x)
    assert prepared.shape == (2, 3, 64, 64)
    black = encoder.prepare(-torch.ones(1, 3, 64, 64))[0, :, 0, 0]  # pixel 0 -> (0 - mean) / std
    torch.testing.assert_close(black, -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225]))
    feats = {}
    reference.layer4.register_forward_hook(lambda m, i, o: feats.setdefault("map", o))
    with torch.no_grad():
        reference(prepared)
    tokens = encoder.patch_tokens(x)
    assert tokens.shape == (2, 512, 2, 2) and not tokens.requires_grad
    torch.testing.assert_close(tokens, feats["map"])


def test_torchvision_vit_readout_drops_the_class_token() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
    net = dataclasses.replace(PRETRAINED["tv-vit-b-16"], input_size=32)
    encoder = FeatureEncoder(net, vit)
    seen = {}
    vit.encoder.register_forward_hook(lambda m, i, o: seen.setdefault("tokens", o))
    x = images(2, 32)
    with torch.no_grad():
        vit(encoder.prepare(x))
    expected = seen["tokens"][:, 1:].reshape(2, 4, 4, 16).permute(0, 3, 1, 2)  # (B, D, 4, 4)
    torch.testing.assert_close(encoder.patch_tokens(x), expected)


def test_domain_default_loads_the_study_network(tmp_path) -> None:
    torch.manual_seed(0)
    net = DomainNet(num_classes=3, width=8, feature_dim=16)
    save_domain_net(net, tmp_path / "domain.pt")
    encoder = load_feature_encoder("domain", tmp_path / "domain.pt")
    x = images(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(encoder.patch_tokens(x), net.eval().patch_tokens(x))
    encoder.train()
    assert not encoder.model.training
