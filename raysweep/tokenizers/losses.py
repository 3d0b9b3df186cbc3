"""The tokenizer's reconstruction objective (paper eq. 12, after VA-VAE):
L = L1(x, x̂) + λ_kl·KL + λ_perc·perceptual(x, x̂) + λ_gan·adversarial(x̂).

LPIPS and GAN are hooks: callables supplied by whoever owns the networks (LPIPS needs downloaded VGG weights, a
GAN needs a discriminator with its own optimizer step), both off by default, which is what CPU studies use.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from raysweep.tokenizers.posterior import DiagonalGaussian

PerceptualFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, x̂) in [-1, 1] -> scalar, e.g. LPIPS
AdversarialFn = Callable[[torch.Tensor], torch.Tensor]  # x̂ -> scalar generator loss, e.g. -D(x̂).mean()


@dataclass(frozen=True)
class ReconstructionObjective:
    kl_weight: float = 1e-6
    perceptual_weight: float = 0.0
    perceptual_fn: PerceptualFn | None = None
    adversarial_weight: float = 0.0
    adversarial_fn: AdversarialFn | None = None

    def __post_init__(self) -> None:
        for name in ("kl", "perceptual", "adversarial"):
            if getattr(self, f"{name}_weight") < 0:
                raise ValueError(f"{name}_weight must be >= 0, got {getattr(self, f'{name}_weight')}")
        for name in ("perceptual", "adversarial"):
            if getattr(self, f"{name}_weight") > 0 and getattr(self, f"{name}_fn") is None:
                raise ValueError(f"{name}_weight = {getattr(self, f'{name}_weight')} needs a {name}_fn")

    def __call__(self, images: torch.Tensor, recon: torch.Tensor,
                 posterior: DiagonalGaussian) -> tuple[torch.Tensor, dict[str, float]]:
        """images, recon (B, 3, H, W) -> (scalar loss, logs). logs["l1"] is the plain reconstruction term."""
        l1 = (recon - images).abs().mean()
        kl = posterior.kl()
        loss = l1 + self.kl_weight * kl
        logs = {"l1": l1.item(), "kl": kl.item()}
        if self.perceptual_fn is not None and self.perceptual_weight > 0:
            perceptual = self.perceptual_fn(images, recon)
            loss = loss + self.perceptual_weight * perceptual
            logs["perceptual"] = perceptual.item()
        if self.adversarial_fn is not None and self.adversarial_weight > 0:
            adversarial = self.adversarial_fn(recon)
            loss = loss + self.adversarial_weight * adversarial
            logs["adversarial"] = adversarial.item()
        return loss, logs
