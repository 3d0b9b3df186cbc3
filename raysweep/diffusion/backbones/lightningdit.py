"""LightningDiT (Yao et al. 2025): the SiT skeleton with RMSNorm, SwiGLU and 2-D RoPE instead of additive
positions, plus QK-norm (Table 2)."""
from __future__ import annotations

from typing import Any

from raysweep.diffusion.backbones.transformer import FlowTransformer
from raysweep.nn.blocks import SwiGLU, rms_norm


class LightningDiT(FlowTransformer):
    """`forward(x (B,C,H,W), t (B,), y (B,)) -> v (B,C,H,W)`; see `FlowTransformer`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(norm_layer=rms_norm, ffn_layer=SwiGLU, rope=True, **kwargs)
