"""No regularization: the plain KL-VAE objective (Table 1's `baseline`)."""
from __future__ import annotations

import torch

from raysweep.tokenizers.regularizers.base import RegContext, Regularizer


class Baseline(Regularizer[None]):
    name = "baseline"

    def loss(self, ctx: RegContext) -> tuple[torch.Tensor, dict[str, float]]:
        return ctx.z.new_zeros(()), {}
