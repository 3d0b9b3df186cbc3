"""SiT (Ma et al. 2024): DiT-style transformer with LayerNorm, GELU MLP, fixed 2-D sincos positions, plus the
QK-norm the paper enables for stability (Table 2)."""
from __future__ import annotations

from typing import Any

from raysweep.diffusion.backbones.transformer import FlowTransformer
from raysweep.nn.blocks import Mlp, layer_norm


class SiT(FlowTransformer):
    """`forward(x (B,C,H,W), t (B,), y (B,)) -> v (B,C,H,W)`; see `FlowTransformer`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(norm_layer=layer_norm, ffn_layer=Mlp, rope=False, **kwargs)
