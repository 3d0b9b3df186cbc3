"""Local Correlation Regularization (SSVAE, Liu et al. 2025; Table 1's `lcr`, e.g. w0.02-th0.75).

The posterior mean is standardised per channel (batch statistics, detached); in every non-overlapping 2x2 window
the four latent vectors are compared by their Pearson correlation across channels (6 pairs); `r` is the mean over
pairs, windows and images. The hinge relu(threshold - r) pulls neighbouring latents together — a low-frequency
biased latent spectrum — and is exactly zero once r reaches the threshold. As in SSVAE, the hinge is scaled by
0.1 · weight · the adaptive gradient-norm ratio at the encoder's last layer (or by `weight` alone if not adaptive).
"""
from __future__ import annotations

import torch
from pydantic import Field

from raysweep.tokenizers.regularizers.base import RegContext, Regularizer, adaptive_weight
from raysweep.tokenizers.regularizers.params import StrictParams

SSVAE_ADAPTIVE_SCALE = 0.1


def local_correlation(z: torch.Tensor) -> torch.Tensor:
    """Mean cross-channel Pearson correlation of latent-vector pairs inside 2x2 windows; z (B, C, h, w), h, w even."""
    b, c, h, w = z.shape
    if c < 2 or h % 2 or w % 2:
        raise ValueError(f"local correlation needs >= 2 channels and an even latent grid, got {c}x{h}x{w}")
    z = (z - z.mean((0, 2, 3), keepdim=True).detach()) / (z.std((0, 2, 3), keepdim=True).detach() + 1e-6)
    win = z.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(-1, 4, c)  # (B*windows, 4, C)
    win = win - win.mean(-1, keepdim=True)
    win = win / (win.norm(dim=-1, keepdim=True) + 1e-8)
    corr = win @ win.transpose(1, 2)  # (B*windows, 4, 4)
    i, j = torch.triu_indices(4, 4, offset=1)
    return corr[:, i, j].mean()


class LcrParams(StrictParams):
    weight: float = Field(0.02, ge=0)
    threshold: float = Field(0.75, ge=-1, le=1)
    adaptive: bool = True


class LocalCorrelation(Regularizer[LcrParams]):
    name = "lcr"
    Params = LcrParams
    search_space = {"weight": {"choice": [0.02, 0.05]}, "threshold": {"uniform": [0.6, 0.9]}}

    def loss(self, ctx: RegContext) -> tuple[torch.Tensor, dict[str, float]]:
        r = local_correlation(ctx.posterior.mean)
        hinge = torch.relu(self.params.threshold - r)
        weight = self.params.weight * (SSVAE_ADAPTIVE_SCALE * adaptive_weight(ctx, hinge) if self.params.adaptive
                                       else 1.0)
        return weight * hinge, {"lcr_r": r.item(), "lcr_hinge": hinge.item()}
