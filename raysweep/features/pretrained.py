"""Pretrained feature networks for the repa / vf regularizers (and later FD), loaded by name from LOCAL weight files.

Every entry says which library builds the architecture, the weight file it expects, how images are normalised
and resized, and how patch tokens are read out; `load_feature_encoder(name)` returns a frozen module whose
`patch_tokens(images in [-1, 1]) -> (B, D, h, w)` is what `TokenizerTrainer(feature_fn=...)` wants. Nothing is ever
downloaded: a missing file is a FileNotFoundError naming every path tried ($RAYSWEEP_WEIGHTS_DIR, torch.hub's
checkpoint cache, or an explicit path) and where the file comes from.

Libraries: `torchvision` (installed), `timm` (the `features` extra, pinned; every timm name here is checked against
timm's model list by tests/test_features_pretrained.py), `open_clip` (optional; a clear error if not importable),
`torchscript` (a `torch.jit` export, for models whose code lives outside pip packages: C-RADIO, WebSSL), and
`domain` (the study-trained DomainNet, the offline default).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from raysweep.features.weights import find_weights

Library = Literal["torchvision", "timm", "open_clip", "torchscript", "domain"]
Readout = Literal["vit", "conv"]  # ViT: drop prefix tokens, reshape to the patch grid; conv: last feature map
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
EXPORT_HINT = ("Export it on a machine with network access: model = <load it as its authors show>; "
               "torch.jit.trace(model, torch.rand(1, 3, S, S)).save(FILE), with patch tokens (B, T, D) as output.")


@dataclass(frozen=True)
class PretrainedNetwork:
    name: str
    library: Library
    arch: str  # constructor name inside the library (torchvision.models / timm / open_clip); "" for the others
    weights_file: str  # expected file name in the weights search dirs
    input_size: int  # images are resized to input_size x input_size
    norm: tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std) on the [0, 1] scale
    readout: Readout = "vit"
    prefix_tokens: int = 1  # class (+ register) tokens in front of the patch tokens
    source: str = ""  # where the weight file comes from (for the not-found error)


def _timm(name: str, arch: str, size: int, norm: Any, prefix: int, source: str) -> PretrainedNetwork:
    return PretrainedNetwork(name, "timm", arch, f"{arch}.pth", size, norm, "vit", prefix,
                             f"timm.create_model('{arch}', pretrained=True).state_dict() saved with torch.save; "
                             f"{source}")


PRETRAINED: dict[str, PretrainedNetwork] = {net.name: net for net in (
    PretrainedNetwork("domain", "domain", "", "domain.pt", 0, HALF, "conv", 0,
                      "stage 0 of every study trains it on the study's images (reference/domain.pt)"),
    PretrainedNetwork("tv-vit-b-16", "torchvision", "vit_b_16", "vit_b_16-c867db91.pth", 224, IMAGENET, "vit", 1,
                      "torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1"),
    PretrainedNetwork("tv-vit-l-16", "torchvision", "vit_l_16", "vit_l_16-852ce7e3.pth", 224, IMAGENET, "vit", 1,
                      "torchvision.models.ViT_L_16_Weights.IMAGENET1K_V1"),
    PretrainedNetwork("tv-resnet50", "torchvision", "resnet50", "resnet50-11ad3fa6.pth", 224, IMAGENET, "conv", 0,
                      "torchvision.models.ResNet50_Weights.IMAGENET1K_V2"),
    _timm("dinov2-b", "vit_base_patch14_dinov2.lvd142m", 224, IMAGENET, 1, "DINOv2 (Oquab et al. 2023)"),
    _timm("dinov2-l", "vit_large_patch14_dinov2.lvd142m", 224, IMAGENET, 1, "DINOv2 (Oquab et al. 2023)"),
    _timm("dinov3-b", "vit_base_patch16_dinov3.lvd1689m", 256, IMAGENET, 5, "DINOv3 (Siméoni et al. 2025), gated"),
    _timm("dinov3-l", "vit_large_patch16_dinov3.lvd1689m", 256, IMAGENET, 5, "DINOv3 (Siméoni et al. 2025), gated"),
    _timm("mae-l", "vit_large_patch16_224.mae", 224, IMAGENET, 1, "MAE (He et al. 2022)"),
    _timm("mocov3-l", "vit_large_patch16_224", 224, IMAGENET, 1,
          "MoCo v3 (Chen et al. 2021): convert its base_encoder keys to timm's ViT names"),
    _timm("siglip-b", "vit_base_patch16_siglip_224.webli", 224, HALF, 0, "SigLIP"),
    _timm("pe-b", "vit_pe_core_base_patch16_224.fb", 224, HALF, 1, "Perception Encoder core (Bolya et al. 2026)"),
    _timm("pe-l", "vit_pe_core_large_patch14_336.fb", 336, HALF, 1, "Perception Encoder core (Bolya et al. 2026)"),
    _timm("langpe-l", "vit_pe_lang_large_patch14_448.fb", 448, HALF, 1, "Perception Encoder lang"),
    _timm("spatialpe-b", "vit_pe_spatial_base_patch16_512.fb", 512, HALF, 1, "Perception Encoder spatial"),
    _timm("spatialpe-l", "vit_pe_spatial_large_patch14_448.fb", 448, HALF, 1, "Perception Encoder spatial"),
    PretrainedNetwork("clip-l", "open_clip", "ViT-L-14", "ViT-L-14-openai.pt", 224, CLIP, "vit", 0,
                      "open_clip ViT-L-14 'openai' (Radford et al. 2021); open_clip reads the file as `pretrained`"),
    PretrainedNetwork("cradio-b", "torchscript", "", "c-radio-b.ts.pt", 256, ((0, 0, 0), (1, 1, 1)), "vit", 0,
                      f"C-RADIO-B (Heinrich et al. 2025, github.com/NVlabs/RADIO). {EXPORT_HINT}"),
    PretrainedNetwork("cradio-l", "torchscript", "", "c-radio-l.ts.pt", 256, ((0, 0, 0), (1, 1, 1)), "vit", 0,
                      f"C-RADIO-L (Heinrich et al. 2025, github.com/NVlabs/RADIO). {EXPORT_HINT}"),
    PretrainedNetwork("webssl-300m", "torchscript", "", "webssl-dino300m.ts.pt", 224, IMAGENET, "vit", 0,
                      f"Web-SSL DINO ViT-300M (Fan et al. 2025, facebook/webssl-dino300m-full2b-224). {EXPORT_HINT}"),
)}


def pretrained_network(name: str) -> PretrainedNetwork:
    if name not in PRETRAINED:
        raise ValueError(f"unknown feature network {name!r}; allowed: {', '.join(sorted(PRETRAINED))}")
    return PRETRAINED[name]


def _import(library: str, name: str) -> Any:
    try:
        return importlib.import_module(library)
    except ImportError:
        raise ImportError(f"feature network {name!r} is built by the optional library {library!r}, which is not "
                          f"installed; `pip install {library.replace('_', '-')}` (no weights are downloaded: the "
                          f"file still comes from the weights dir), or pick one of the torchvision / domain "
                          f"entries") from None


def _load_state(path: Path) -> dict[str, Any]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("state_dict", blob.get("model", blob)) if isinstance(blob, dict) else blob
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict (a {type(state).__name__}); save `model.state_dict()`")
    return state


def build_network(net: PretrainedNetwork, path: Path) -> nn.Module:
    """The architecture from its library, with the local file's weights; never downloads."""
    if net.library == "domain":
        from raysweep.features.domain_net import load_domain_net

        return load_domain_net(path)
    if net.library == "torchscript":
        return torch.jit.load(str(path), map_location="cpu")
    if net.library == "open_clip":
        model = _import("open_clip", net.name).create_model(net.arch, pretrained=str(path)).visual
        model.output_tokens = True
        return model
    if net.library == "timm":  # timm's own local-file route: it maps / drops head keys as for a hub download, and
        # resamples position embeddings to `input_size` (DINOv2's timm config is 518 px; REPA reads it at 224)
        return _import("timm", net.name).create_model(net.arch, pretrained=True, num_classes=0,
                                                     img_size=net.input_size,
                                                     pretrained_cfg_overlay={"file": str(path)})
    model = getattr(importlib.import_module("torchvision.models"), net.arch)(weights=None)
    model.load_state_dict(_load_state(path))
    return model


def _grid(tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """(B, prefix + h·w, D) -> (B, D, h, w) for a square patch grid."""
    patches = tokens[:, prefix:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens do not form a square grid")
    return patches.transpose(1, 2).unflatten(2, (side, side))


class FeatureEncoder(nn.Module):
    """A frozen pretrained network behind one method, `patch_tokens` (the interface DomainNet has too)."""

    def __init__(self, net: PretrainedNetwork, model: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.model = model.eval().requires_grad_(False)
        mean, std = net.norm
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FeatureEncoder:
        return super().train(False)  # frozen: BatchNorm / dropout stay in inference mode

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> resized (B, 3, S, S), normalised with the network's mean / std."""
        x = (images + 1) / 2
        if self.net.input_size and x.shape[-1] != self.net.input_size:
            size = (self.net.input_size, self.net.input_size)
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        return (x - self.get_buffer("mean")) / self.get_buffer("std")

    @torch.no_grad()
    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> patch tokens (B, D, h, w)."""
        lib, model = self.net.library, self.model
        if lib == "domain":
            return model.patch_tokens(images)  # type: ignore[operator]
        x = self.prepare(images)
        if lib == "torchvision" and self.net.readout == "conv":
            return nn.Sequential(*list(model.children())[:-2])(x)  # resnet: drop avgpool + fc
        if lib == "torchvision":  # VisionTransformer: patchify, class token, encoder (with its final LayerNorm)
            tokens = model._process_input(x)  # type: ignore[operator]
            cls = model.class_token.expand(tokens.shape[0], -1, -1)  # type: ignore[operator]
            return _grid(model.encoder(torch.cat([cls, tokens], dim=1)), 1)  # type: ignore[operator]
        if lib == "timm":
            return _grid(model.forward_features(x), int(model.num_prefix_tokens))  # type: ignore[operator,arg-type]
        if lib == "open_clip":
            return _grid(model(x)[1], 0)
        return _grid(model(x), self.net.prefix_tokens)


def load_feature_encoder(name: str, weights_path: str | Path | None = None) -> FeatureEncoder:
    """Resolve `name`'s local weights (explicit path, else $RAYSWEEP_WEIGHTS_DIR / torch.hub's cache) and build it.

    ValueError for an unknown name, FileNotFoundError (every path tried, where the file comes from) when the weights
    are missing, ImportError naming the optional library when it is not installed."""
    net = pretrained_network(name)
    path = find_weights(name, (net.weights_file,), weights_path, f"It is {net.source}.")
    return FeatureEncoder(net, build_network(net, path))
