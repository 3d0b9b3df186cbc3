"""The regularizer interface. A regularizer is one file: a `Params` model (paper defaults, unknown keys rejected),
a `search_space` for the sweep, and `loss(ctx)`; registering it is one line in `regularizers/registry.py`. This
module is plain torch: the `Params` models (pydantic) live in `params.py`, so the trainer runs without pydantic."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from raysweep.tokenizers.posterior import DiagonalGaussian
from raysweep.tokenizers.tokenizer import Tokenizer

if TYPE_CHECKING:
    from raysweep.tokenizers.regularizers.params import StrictParams

ADAPTIVE_MAX = 1e8  # clamp of VA-VAE's / SSVAE's gradient-norm ratio
P = TypeVar("P", bound="StrictParams | None")


@dataclass
class RegContext:
    """What a regularizer may look at for one training batch."""

    images: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    posterior: DiagonalGaussian  # q(z|x) of the batch, means (B, C, h, w)
    z: torch.Tensor  # (B, C, h, w) the sampled latent the reconstruction was decoded from
    model: Tokenizer  # for re-decoding transformed / masked latents
    features: torch.Tensor | None  # (B, D, h', w') frozen feature-network patch tokens, when needs_features
    generator: torch.Generator  # the trainer's seeded RNG: random choices here stay resumable
    recon_loss: torch.Tensor  # scalar, still attached to the graph: reference for adaptive weights


class Regularizer(nn.Module, Generic[P]):
    name: ClassVar[str]
    Params: ClassVar[type[StrictParams] | None] = None  # None: takes no params (and needs no pydantic to build)
    search_space: ClassVar[dict[str, dict[str, list[Any]]]] = {}  # param -> one search domain (config/search.py)
    needs_features: ClassVar[bool] = False
    # passes per training image beyond the model's one encode + decode (the FLOP estimate reads them)
    extra_decodes: ClassVar[int] = 0  # e.g. decoding a transformed or masked latent again
    extra_encode_decodes: ClassVar[int] = 0  # e.g. a whole masked pass

    def __init__(self, params: P) -> None:
        super().__init__()
        self.params = params

    def bind(self, latent_channels: int, feature_dim: int | None) -> None:
        """Build what depends on the tokenizer and feature network (projectors, mask tokens). The trainer calls it
        once, before making the optimizer; `feature_dim` is None unless `needs_features`."""

    def loss(self, ctx: RegContext) -> tuple[torch.Tensor, dict[str, float]]:
        """(scalar loss, float logs); the trainer adds `reg_weight * loss` to the reconstruction objective."""
        raise NotImplementedError


def adaptive_weight(ctx: RegContext, loss: torch.Tensor) -> torch.Tensor:
    """VA-VAE's balance ‖∇_W L_rec‖ / (‖∇_W loss‖ + 1e-4), W = the encoder's last layer, clamped and
    detached: the regularizer's gradient at the encoder output gets the reconstruction gradient's scale."""
    layer = ctx.model.encoder_output_layer
    g_rec = torch.autograd.grad(ctx.recon_loss, layer, retain_graph=True)[0]
    g_reg = torch.autograd.grad(loss, layer, retain_graph=True, allow_unused=True)[0] if loss.requires_grad else None
    reg_norm = g_rec.new_zeros(()) if g_reg is None else g_reg.norm()
    return (g_rec.norm() / (reg_norm + 1e-4)).clamp(0.0, ADAPTIVE_MAX).detach()
