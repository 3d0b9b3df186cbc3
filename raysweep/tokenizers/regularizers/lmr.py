"""Latent Masked Reconstruction (SSVAE, Liu et al. 2025; Table 1's `lmr`, e.g. p0.1-0.10-0.10).

Per batch a mask ratio is drawn from {0, 0.25, 0.5, 0.75}: `mask_probs` are the probabilities of the three
non-zero ratios (Table 1's variant name), the rest is "no mask". The same randomly chosen latent positions of
every image are replaced by a learnable mask token, and the loss is L1(Dec(z_masked), x). SSVAE decodes only the
masked latent; here the term is added to the plain reconstruction, so an unmasked batch contributes exactly zero.
"""
from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from raysweep.tokenizers.regularizers.base import RegContext, Regularizer
from raysweep.tokenizers.regularizers.params import StrictParams

MASK_RATIOS = (0.25, 0.5, 0.75)


class LmrParams(StrictParams):
    weight: float = Field(1.0, ge=0)
    mask_probs: tuple[float, float, float] = (0.1, 0.1, 0.1)  # P(ratio) for MASK_RATIOS; P(no mask) = 1 - sum

    @model_validator(mode="after")
    def _probabilities(self) -> LmrParams:
        if min(self.mask_probs) < 0 or sum(self.mask_probs) > 1 + 1e-9:
            raise ValueError(f"mask_probs {self.mask_probs} must be >= 0 and sum to <= 1 "
                             f"(probabilities of mask ratios {MASK_RATIOS})")
        return self


class LatentMaskedReconstruction(Regularizer[LmrParams]):
    name = "lmr"
    Params = LmrParams
    extra_decodes = 1  # the masked latent is decoded too
    search_space = {"mask_probs": {"choice": [[0.1, 0.05, 0.05], [0.1, 0.1, 0.1], [0.1, 0.15, 0.15]]}}

    def bind(self, latent_channels: int, feature_dim: int | None) -> None:
        self.mask_token = nn.Parameter(torch.randn(1, latent_channels, 1, 1))

    def sample_mask(self, grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor | None:
        """Boolean (h, w) mask of the positions to replace, or None when the drawn ratio is 0."""
        probs = torch.tensor([1 - sum(self.params.mask_probs), *self.params.mask_probs]).clamp_min(0)
        choice = int(torch.multinomial(probs, 1, generator=generator))
        if choice == 0:
            return None
        n = grid[0] * grid[1]
        masked = torch.randperm(n, generator=generator)[:max(1, int(n * MASK_RATIOS[choice - 1]))]
        return torch.zeros(n, dtype=torch.bool).index_fill_(0, masked, True).reshape(grid)

    def loss(self, ctx: RegContext) -> tuple[torch.Tensor, dict[str, float]]:
        mask = self.sample_mask((ctx.z.shape[-2], ctx.z.shape[-1]), ctx.generator)
        if mask is None:
            return ctx.z.new_zeros(()), {"lmr_ratio": 0.0}
        z_masked = torch.where(mask.to(ctx.z.device), self.mask_token, ctx.z)  # (B, C, h, w)
        l1 = (ctx.model.decode(z_masked) - ctx.images).abs().mean()
        return self.params.weight * l1, {"lmr_ratio": float(mask.float().mean()), "lmr_l1": l1.item()}
