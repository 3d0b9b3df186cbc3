"""EQ-VAE (Kouzelis et al. 2025): decoding a transformed latent must give the equally transformed image.

With probability `p` per batch one transform τ is drawn from `transforms` — `scale` (factor s in [scale_min, 1),
bilinear with antialiasing on latent and image alike), `rotate` (k·90°, k in {1, 2, 3}) or `flip` (horizontal) —
and the loss is L1(Dec(τ(z)), τ(x)). EQ-VAE swaps this in for the reconstruction term; here it is added to it, so
the identity transform (drawn with probability 1 - p) contributes exactly zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from raysweep.tokenizers.regularizers.base import RegContext, Regularizer
from raysweep.tokenizers.regularizers.params import StrictParams

Kind = Literal["scale", "rotate", "flip"]


@dataclass(frozen=True)
class EqTransform:
    kind: Literal["identity", "scale", "rotate", "flip"]
    amount: float = 0.0  # scale factor s for `scale`, quarter turns k for `rotate`

    def apply(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """x (B, C, n, n) -> τ(x); `size` is the output side for `scale` (ignored otherwise)."""
        if self.kind == "rotate":
            return torch.rot90(x, int(self.amount), dims=(-2, -1))
        if self.kind == "flip":
            return torch.flip(x, dims=(-1,))
        if self.kind == "scale":
            return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x


IDENTITY = EqTransform("identity")


class EqParams(StrictParams):
    weight: float = Field(1.0, ge=0)
    p: float = Field(0.5, ge=0, le=1)  # probability of a non-identity transform per batch (EQ-VAE: 0.5)
    transforms: tuple[Kind, ...] = Field(("scale", "rotate"), min_length=1)
    scale_min: float = Field(0.25, gt=0, lt=1)


class Equivariance(Regularizer[EqParams]):
    name = "eq"
    Params = EqParams
    extra_decodes = 1  # the transformed latent is decoded too
    search_space = {"p": {"uniform": [0.25, 1.0]}, "transforms": {"choice": [["scale"], ["rotate"], ["flip"],
                                                                            ["scale", "rotate"]]}}

    def sample_transform(self, generator: torch.Generator) -> EqTransform:
        p = self.params
        if float(torch.rand((), generator=generator)) >= p.p:
            return IDENTITY
        kind = p.transforms[int(torch.randint(len(p.transforms), (), generator=generator))]
        if kind == "rotate":
            return EqTransform(kind, float(torch.randint(1, 4, (), generator=generator)))
        if kind == "scale":
            return EqTransform(kind, p.scale_min + (1 - p.scale_min) * float(torch.rand((), generator=generator)))
        return EqTransform(kind)

    def transformed_recon(self, ctx: RegContext, transform: EqTransform) -> torch.Tensor:
        """L1(Dec(τ(z)), τ(x)); for the identity this is the plain reconstruction L1 of z."""
        h = ctx.z.shape[-1]
        small = max(1, round(transform.amount * h))  # latent side after `scale`; the image follows at `down` x
        z_t = transform.apply(ctx.z, small)  # (B, C, h', h')
        x_t = transform.apply(ctx.images, small * (ctx.images.shape[-1] // h))  # (B, 3, H', H')
        return (ctx.model.decode(z_t) - x_t).abs().mean()

    def loss(self, ctx: RegContext) -> tuple[torch.Tensor, dict[str, float]]:
        transform = self.sample_transform(ctx.generator)
        if transform.kind == "identity":
            return ctx.z.new_zeros(()), {"eq_active": 0.0}
        l1 = self.transformed_recon(ctx, transform)
        return self.params.weight * l1, {"eq_active": 1.0, "eq_l1": l1.item()}
