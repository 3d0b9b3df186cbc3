"""The tokenizer's reconstruction objective, paper eq. 12 without its GAN term (see `adversarial.py`):
L_rec = L1(x, x̂) + λ1·perceptual(x, x̂) + λ3·KL, with λ1 = 1 (LPIPS, `perceptual.py`) and λ3 = 1e-6 in the paper.

The perceptual term is a callable supplied by the caller (LPIPS from local weights, or the domain-network
fallback); it is off by default, which is what CPU smoke studies use.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from raysweep.tokenizers.posterior import DiagonalGaussian

PerceptualFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, x̂) in [-1, 1] -> scalar, e.g. LPIPS


@dataclass(frozen=True)
class ReconstructionObjective:
    kl_weight: float = 1e-6
    perceptual_weight: float = 0.0
    perceptual_fn: PerceptualFn | None = None

    def __post_init__(self) -> None:
        for name in ("kl", "perceptual"):
            if getattr(self, f"{name}_weight") < 0:
                raise ValueError(f"{name}_weight must be >= 0, got {getattr(self, f'{name}_weight')}")
        if self.perceptual_weight > 0 and self.perceptual_fn is None:
            raise ValueError(f"perceptual_weight = {self.perceptual_weight} needs a perceptual_fn")

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
        return loss, logs
