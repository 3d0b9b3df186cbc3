"""Token masking for the transformer tokenizer (after MAETok, Chen et al. 2025; Table 1's `mae`, e.g. r0.3 / r0.7).

Per batch a mask ratio ρ ~ U(0, max_ratio) is drawn; in every image round(ρ·T) randomly chosen patch tokens are
replaced by the encoder's learnable mask token before its transformer blocks, and the loss is
weight · L1(Dec(z_masked), x) with z_masked sampled from the masked posterior: the encoder must infer missing
content from context. MAETok trains on masked inputs only; here the term is added to the plain reconstruction,
so a batch drawn with no masked token contributes exactly zero. Needs a tokenizer with `encode_masked` (vit-*).
"""
from __future__ import annotations

import torch
from pydantic import Field

from raysweep.tokenizers.regularizers.base import RegContext, Regularizer
from raysweep.tokenizers.regularizers.params import StrictParams


class MaeParams(StrictParams):
    weight: float = Field(1.0, ge=0)
    max_ratio: float = Field(0.7, ge=0, lt=1)  # Table 1's r


class TokenMasking(Regularizer[MaeParams]):
    name = "mae"
    Params = MaeParams
    extra_encode_decodes = 1  # the masked pass
    search_space = {"max_ratio": {"uniform": [0.1, 0.9]}}

    def sample_mask(self, batch: int, tokens: int, generator: torch.Generator) -> torch.Tensor | None:
        """Boolean (B, T) mask, the same count round(ρ·T) per image at independent positions; None if it is 0."""
        ratio = self.params.max_ratio * float(torch.rand((), generator=generator))
        count = round(ratio * tokens)
        if count == 0:
            return None
        ranks = torch.rand(batch, tokens, generator=generator).argsort(dim=1).argsort(dim=1)  # (B, T) random ranks
        return ranks < count

    def loss(self, ctx: RegContext) -> tuple[torch.Tensor, dict[str, float]]:
        encode_masked = getattr(ctx.model, "encode_masked", None)
        if encode_masked is None:
            raise ValueError(f"regularizer 'mae' masks patch tokens and needs a transformer tokenizer (vit-*), got "
                             f"{type(ctx.model).__name__}")
        b, _, h, w = ctx.z.shape
        mask = self.sample_mask(b, h * w, ctx.generator)
        if mask is None:
            return ctx.z.new_zeros(()), {"mae_ratio": 0.0}
        z_masked = encode_masked(ctx.images, mask).sample(ctx.generator)  # (B, C, h, w)
        l1 = (ctx.model.decode(z_masked) - ctx.images).abs().mean()
        return self.params.weight * l1, {"mae_ratio": float(mask.float().mean()), "mae_l1": l1.item()}
