"""VA-VAE's vision-foundation alignment (Yao et al. 2025b): a learnable linear projector (1x1 conv, no bias) maps
the sampled latent to the feature width D; on the latent grid

    mcos = mean_i relu(1 - m1 - cos(p_i, f_i))                                  (m1 = 0.5)
    mdms = mean_{i,j} relu(|cos(p_i, p_j) - cos(f_i, f_j)| - m2)                (m2 = 0.25)

Table 1's clusters: `vf` (mcos + mdms), `mcos`, `mdms`. The total is scaled by `weight` times, if `adaptive`,
VA-VAE's gradient-norm ratio at the encoder's last layer.
"""
from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from raysweep.tokenizers.regularizers.alignment import EncoderParams, feature_tokens, tokens
from raysweep.tokenizers.regularizers.base import RegContext, Regularizer, adaptive_weight


def mcos_loss(z_tok: torch.Tensor, f_tok: torch.Tensor, margin: float) -> torch.Tensor:
    """Marginal cosine similarity loss of tokens (B, N, D): zero once every token aligns beyond the margin."""
    return torch.relu(1 - margin - F.cosine_similarity(z_tok, f_tok, dim=-1)).mean()


def mdms_loss(z_tok: torch.Tensor, f_tok: torch.Tensor, margin: float) -> torch.Tensor:
    """Marginal distance-matrix similarity loss of tokens (B, N, D): matches the (N, N) cosine structure."""
    zn, fn = F.normalize(z_tok, dim=-1), F.normalize(f_tok, dim=-1)
    return torch.relu((zn @ zn.transpose(1, 2) - fn @ fn.transpose(1, 2)).abs() - margin).mean()


class AlignParams(EncoderParams):
    weight: float = Field(0.1, ge=0)  # VA-VAE's vf_weight
    adaptive: bool = True


class VfParams(AlignParams):
    mcos_margin: float = Field(0.5, ge=0, le=2)
    mdms_margin: float = Field(0.25, ge=0, le=2)
    mcos_weight: float = Field(1.0, ge=0)
    mdms_weight: float = Field(1.0, ge=0)


class McosParams(AlignParams):
    margin: float = Field(0.5, ge=0, le=2)


class MdmsParams(AlignParams):
    margin: float = Field(0.25, ge=0, le=2)


A = TypeVar("A", bound=AlignParams)


class FoundationAlignment(Regularizer[A]):
    """Shared projector and weighting; subclasses say which terms to compute."""

    needs_features = True

    def bind(self, latent_channels: int, feature_dim: int | None) -> None:
        if feature_dim is None:
            raise ValueError(f"regularizer {self.name!r} needs the feature network's token width")
        self.projector = nn.Conv2d(latent_channels, feature_dim, 1, bias=False)

    def terms(self, z_tok: torch.Tensor, f_tok: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, ctx: RegContext) -> tuple[torch.Tensor, dict[str, float]]:
        f_tok = feature_tokens(ctx, self.name)  # (B, hw, D)
        z_tok = tokens(self.projector(ctx.z))  # (B, hw, D)
        terms = self.terms(z_tok, f_tok)
        total = torch.stack(list(terms.values())).sum()
        weight = self.params.weight * (adaptive_weight(ctx, total) if self.params.adaptive else 1.0)
        return weight * total, {**{k: v.item() for k, v in terms.items()}, "vf_weight": float(weight)}


class Vf(FoundationAlignment[VfParams]):
    name = "vf"
    Params = VfParams
    search_space = {"weight": {"loguniform": [0.03, 0.3]}}

    def terms(self, z_tok: torch.Tensor, f_tok: torch.Tensor) -> dict[str, torch.Tensor]:
        p = self.params
        return {"mcos": p.mcos_weight * mcos_loss(z_tok, f_tok, p.mcos_margin),
                "mdms": p.mdms_weight * mdms_loss(z_tok, f_tok, p.mdms_margin)}


class Mcos(FoundationAlignment[McosParams]):
    name = "mcos"
    Params = McosParams
    search_space = {"weight": {"loguniform": [0.03, 0.3]}}

    def terms(self, z_tok: torch.Tensor, f_tok: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mcos": mcos_loss(z_tok, f_tok, self.params.margin)}


class Mdms(FoundationAlignment[MdmsParams]):
    name = "mdms"
    Params = MdmsParams
    search_space = {"weight": {"loguniform": [0.03, 0.3]}}

    def terms(self, z_tok: torch.Tensor, f_tok: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mdms": mdms_loss(z_tok, f_tok, self.params.margin)}
