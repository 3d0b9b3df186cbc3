"""The perceptual term of the tokenizer objective (paper eq. 12, λ1 = 1): LPIPS from local weight files, or, when
none is given, the same distance on the study's domain network.

Both are LPIPS's formula (Zhang et al. 2018) over a stack of frozen feature stages:
    d(x, y) = Σ_l mean_hw Σ_c w_lc · (x̂_lc - ŷ_lc)²,   x̂_l = stage-l features unit-normalised over channels,
averaged over the batch. LPIPS-VGG uses VGG16's relu1_2 ... relu5_3 and its learned non-negative weights w; the
fallback uses DomainNet's three resolution stages (H, H/2, H/4) with all w = 1, i.e. LPIPS's unlearned
"baseline" variant on a network trained on the study's own images. Gradients flow to the reconstruction only.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from raysweep.features.domain_net import DomainNet
from raysweep.features.weights import find_weights

VGG_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16 (VGG16_Weights.IMAGENET1K_V1)
LPIPS_FILES = ("vgg.pth", "lpips_vgg.pth")  # richzhang/PerceptualSimilarity weights/v0.1/vgg.pth (= taming's)
VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # features[a:b] ends at relu1_2 ... relu5_3
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's ScalingLayer for inputs in [-1, 1]
LPIPS_SCALE = (0.458, 0.448, 0.450)
DOMAIN_SLICES = ((0, 2), (2, 4), (4, 6))  # DomainNet.body: the H, H/2 and H/4 stages


class PerceptualDistance(nn.Module):
    """images x, y (B, 3, H, W) in [-1, 1] -> scalar LPIPS-style distance (mean over the batch)."""

    def __init__(self, stages: Sequence[nn.Module], weights: Sequence[torch.Tensor] | None = None,
                 shift: Sequence[float] = (0.0, 0.0, 0.0), scale: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.weights = None if weights is None else nn.ParameterList(
            nn.Parameter(w.reshape(1, -1, 1, 1).clone(), requires_grad=False) for w in weights)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> PerceptualDistance:
        return super().train(False)  # frozen feature network

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale = self.get_buffer("shift"), self.get_buffer("scale")
        fx, fy = (x - shift) / scale, (y - shift) / scale
        total = x.new_zeros(x.shape[0])
        for i, stage in enumerate(self.stages):
            fx, fy = stage(fx), stage(fy)  # (B, C_l, H_l, W_l)
            diff = (unit(fx) - unit(fy)).square()
            weighted = diff.sum(1) if self.weights is None else (diff * self.weights[i]).sum(1)  # (B, H_l, W_l)
            total = total + weighted.mean((-2, -1))
        return total.mean()


def unit(f: torch.Tensor) -> torch.Tensor:
    """Features (B, C, H, W) divided by their L2 norm over channels (LPIPS's normalize_tensor)."""
    return f / (f.square().sum(1, keepdim=True).sqrt() + 1e-10)


def lpips_vgg(lpips_path: str | Path, vgg_path: str | Path | None = None) -> PerceptualDistance:
    """LPIPS-VGG from local files: the LPIPS linear heads (`lin{0..4}.model.1.weight`, (1, C, 1, 1) each) and
    torchvision's VGG16 (`features.*`), looked for beside the LPIPS file, then in the weights search dirs."""
    from torchvision.models import vgg16

    lin_file = find_weights("lpips", LPIPS_FILES, lpips_path, "It is weights/v0.1/vgg.pth of "
                            "github.com/richzhang/PerceptualSimilarity (taming-transformers ships the same file).")
    beside = Path(lin_file).parent / VGG_FILE
    vgg_file = find_weights("vgg16", (VGG_FILE,), vgg_path or (beside if beside.is_file() else None),
                            "It is torchvision's ImageNet VGG16 state dict (VGG16_Weights.IMAGENET1K_V1).")
    vgg = vgg16(weights=None)
    vgg.load_state_dict(torch.load(vgg_file, map_location="cpu", weights_only=True))
    lin = torch.load(lin_file, map_location="cpu", weights_only=True)
    stages = [vgg.features[a:b] for a, b in VGG_SLICES]
    return PerceptualDistance(stages, [lin[f"lin{i}.model.1.weight"] for i in range(len(stages))],
                              LPIPS_SHIFT, LPIPS_SCALE)


def domain_perceptual(net: DomainNet) -> PerceptualDistance:
    """The offline fallback: LPIPS's unlearned distance over DomainNet's three resolution stages."""
    return PerceptualDistance([net.body[a:b] for a, b in DOMAIN_SLICES])


def perceptual_distance(lpips_path: str | Path | None, domain_net: DomainNet | None) -> PerceptualDistance:
    """LPIPS-VGG if an LPIPS weights file is given, else the domain-network fallback; ValueError if neither."""
    if lpips_path is not None:
        return lpips_vgg(lpips_path)
    if domain_net is None:
        raise ValueError("the perceptual term needs an LPIPS weights file (vgg.pth) or the study's domain network")
    return domain_perceptual(domain_net)
