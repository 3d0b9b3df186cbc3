"""REPA applied to the tokenizer (Yu et al. 2024b; Table 1's `repa`): an MLP projector (REPA's three layers with
SiLU, as 1x1 convs) maps the sampled latent to the feature width, and the loss is the negative mean cosine
similarity to the frozen feature tokens on the latent grid, times `weight` (REPA's λ = 0.5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from raysweep.tokenizers.regularizers.alignment import EncoderParams, feature_tokens, tokens
from raysweep.tokenizers.regularizers.base import RegContext, Regularizer


class RepaParams(EncoderParams):
    weight: float = Field(0.5, ge=0)
    hidden: int = Field(2048, ge=1)  # REPA's projector width; CPU studies want far fewer


class Repa(Regularizer[RepaParams]):
    name = "repa"
    Params = RepaParams
    search_space = {"weight": {"loguniform": [0.1, 1.0]}}
    needs_features = True

    def bind(self, latent_channels: int, feature_dim: int | None) -> None:
        if feature_dim is None:
            raise ValueError(f"regularizer {self.name!r} needs the feature network's token width")
        h = self.params.hidden
        self.projector = nn.Sequential(nn.Conv2d(latent_channels, h, 1), nn.SiLU(), nn.Conv2d(h, h, 1), nn.SiLU(),
                                       nn.Conv2d(h, feature_dim, 1))

    def loss(self, ctx: RegContext) -> tuple[torch.Tensor, dict[str, float]]:
        f_tok = feature_tokens(ctx, self.name)  # (B, hw, D)
        z_tok = tokens(self.projector(ctx.z))  # (B, hw, D)
        cos = F.cosine_similarity(z_tok, f_tok, dim=-1).mean()
        return -self.params.weight * cos, {"repa_cos": cos.item()}
