"""Forward FLOPs of the study's networks for one image, counted exactly with torch's FlopCounterMode on meta
tensors (no memory, no compute), split by the GPU unit that runs them: convolutions (cuDNN) and matmuls (cuBLAS,
attention). The split matters because fp32 code gets TF32 tensor cores for convolutions but not for matmuls under
torch's defaults (see `estimate.py`). Element-wise ops, norms and optimizer updates are not counted."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from raysweep.tokenizers import PatchGAN, build_tokenizer, parse_latent_config


@dataclass(frozen=True)
class Flops:
    conv: float = 0.0
    matmul: float = 0.0

    @property
    def total(self) -> float:
        return self.conv + self.matmul

    def __add__(self, other: Flops) -> Flops:
        return Flops(self.conv + other.conv, self.matmul + other.matmul)

    def __mul__(self, factor: float) -> Flops:
        return Flops(self.conv * factor, self.matmul * factor)

    __rmul__ = __mul__


ZERO = Flops()
# Dense datasheet peaks in FLOP/s by precision (fp32 convolutions / matmuls run on TF32 tensor cores where torch
# enables it, see `peak_seconds`). Keys are GPU models; `gpu_model` maps a `torch.cuda.get_device_name()` to one.
GPU_PEAKS: dict[str, dict[str, float]] = {
    "NVIDIA H100 SXM": {"bf16": 989e12, "tf32": 494.7e12, "fp32": 66.9e12},
    "NVIDIA H100 PCIe": {"bf16": 756.5e12, "tf32": 378e12, "fp32": 51.2e12},
    "NVIDIA H100 NVL": {"bf16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12},
    "NVIDIA H200": {"bf16": 989e12, "tf32": 494.7e12, "fp32": 66.9e12},
    "NVIDIA H200 NVL": {"bf16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12},
    "NVIDIA A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    "NVIDIA L40S": {"bf16": 362.05e12, "tf32": 183e12, "fp32": 91.6e12},
}
# (substring of the device name, model), first match wins: "NVIDIA H100 80GB HBM3" is the SXM part
_DEVICE_NAMES = (("H100 PCIe", "NVIDIA H100 PCIe"), ("H100 NVL", "NVIDIA H100 NVL"), ("H100", "NVIDIA H100 SXM"),
                 ("H200 NVL", "NVIDIA H200 NVL"), ("H200", "NVIDIA H200"), ("A100", "NVIDIA A100"),
                 ("L40S", "NVIDIA L40S"))


def gpu_model(device_name: str) -> str | None:
    """The `GPU_PEAKS` key of a CUDA device name, or None for a GPU not in the table."""
    return next((model for part, model in _DEVICE_NAMES if part in device_name), None)


def peak_seconds(flops: Flops, precision: str, peaks: dict[str, float]) -> float:
    """Seconds `flops` take at the device's peak: bf16 for both units, or fp32 code under torch's TF32 settings
    (cuDNN convolutions and cuBLAS matmuls each on TF32 tensor cores only where enabled)."""
    if precision == "bf16":
        return flops.total / peaks["bf16"]
    conv = peaks["tf32" if torch.backends.cudnn.allow_tf32 else "fp32"]
    matmul = peaks["tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"]
    return flops.conv / conv + flops.matmul / matmul


def count(fn: Callable[[], Any]) -> Flops:
    """FLOPs of running `fn` (on meta tensors, or real ones: a training step's backward is counted too),
    convolutions separated from everything else counted."""
    with FlopCounterMode(display=False) as counter:
        fn()
    ops = counter.get_flop_counts().get("Global", {})
    conv = float(sum(n for op, n in ops.items() if "convolution" in str(op)))
    return Flops(conv, float(counter.get_total_flops()) - conv)


@lru_cache(maxsize=64)
def tokenizer_flops(architecture: str, latent: str, image_size: int) -> tuple[Flops, Flops]:
    """(encoder, decoder) forward FLOPs for one image."""
    with torch.device("meta"):
        model = build_tokenizer(architecture, latent, image_size)
        x = torch.empty(1, 3, image_size, image_size)
        z = model.encode(x).mean
        return count(lambda: model.encode(x)), count(lambda: model.decode(z))


@lru_cache(maxsize=8)
def vgg_flops(image_size: int) -> Flops:
    """LPIPS's VGG16 feature stack at `image_size`; counted at 224 px and scaled by the pixel count (its five
    max-pools need >= 32 px; conv FLOPs are proportional to H·W)."""
    from torchvision.models import vgg16

    with torch.device("meta"):
        vgg, x224 = vgg16().features, torch.empty(1, 3, 224, 224)
        return count(lambda: vgg(x224)) * (image_size / 224) ** 2


@lru_cache(maxsize=8)
def patchgan_flops(image_size: int, channels: int = 64) -> Flops:
    with torch.device("meta"):
        disc, x = PatchGAN(image_size, channels), torch.empty(1, 3, image_size, image_size)
        return count(lambda: disc(x))


@lru_cache(maxsize=8)
def scoring_flops(feature_network: str, image_size: int, num_classes: int) -> Flops:
    """The FID / IS network on one image as its extractor sees it: torchvision's Inception-v3 at 299 px stands for
    the FID Inception (same layers), torchvision's VGG16 at 224 px, the DomainNet at native size."""
    from torchvision.models import inception_v3, vgg16

    from raysweep.features.domain_net import DomainNet

    with torch.device("meta"):
        if feature_network == "inception-v3-compat":
            net, size = inception_v3(weights=None, aux_logits=False, init_weights=False).eval(), 299
        elif feature_network == "vgg16":
            net, size = vgg16().eval(), 224
        else:
            net, size = DomainNet(num_classes).eval(), image_size
        x = torch.empty(1, 3, size, size)
        return count(lambda: net(x))


@lru_cache(maxsize=64)
def backbone_flops(backbone: str, latent: str, image_size: int, num_classes: int, patch_size: int) -> Flops:
    """One velocity evaluation of diffusion preset `backbone` on one latent of the tokenizer's shape."""
    from raysweep.diffusion.backbones import build_backbone

    c, h, w = parse_latent_config(latent).latent_shape(image_size)
    with torch.device("meta"):
        model = build_backbone(backbone, in_channels=c, input_size=h, num_classes=num_classes,
                               patch_size=patch_size).eval()
        x, t, y = torch.empty(1, c, h, w), torch.empty(1), torch.zeros(1, dtype=torch.long)
        return count(lambda: model(x, t, y))
