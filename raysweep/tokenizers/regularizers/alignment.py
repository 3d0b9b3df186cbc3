"""Shared pieces of the feature-alignment regularizers (vf, repa): tokens on the latent grid."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import field_validator

from raysweep.tokenizers.regularizers.base import RegContext
from raysweep.tokenizers.regularizers.params import StrictParams


class EncoderParams(StrictParams):
    """`encoder`: the frozen feature network whose patch tokens are the target, a name in
    `raysweep.features.pretrained.PRETRAINED` (Table 1's variants: dinov2-b, clip-l, mae-l, ...); `domain` is the
    study-trained network, the offline default."""

    encoder: str = "domain"

    @field_validator("encoder")
    @classmethod
    def _known(cls, v: str) -> str:
        from raysweep.features.pretrained import PRETRAINED

        if v not in PRETRAINED:
            raise ValueError(f"unknown feature network {v!r}; allowed: {', '.join(sorted(PRETRAINED))}")
        return v


def tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B, h*w, D)."""
    return x.flatten(2).transpose(1, 2)


def features_on_grid(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Feature tokens (B, D, h', w') resized to the latent grid (B, D, h, w): area average when shrinking (each latent
    position sees the tokens it covers), bilinear when growing."""
    if features.shape[-2:] == grid:
        return features
    if features.shape[-2] >= grid[0] and features.shape[-1] >= grid[1]:
        return F.adaptive_avg_pool2d(features, grid)
    return F.interpolate(features, size=grid, mode="bilinear", align_corners=False)


def feature_tokens(ctx: RegContext, name: str) -> torch.Tensor:
    """The batch's feature tokens on the latent grid, (B, h*w, D); ValueError if the trainer supplied none."""
    if ctx.features is None:
        raise ValueError(f"regularizer {name!r} needs feature-network tokens; the trainer was given no feature_fn")
    return tokens(features_on_grid(ctx.features, (ctx.z.shape[-2], ctx.z.shape[-1])))
