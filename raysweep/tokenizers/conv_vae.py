"""LDM-style convolutional KL-VAE for any `f{down}d{ch}` latent configuration.

Encoder: conv_in, then log2(down) + 1 resolution stages of ResNet blocks (GroupNorm + SiLU), a stride-2 conv
between stages, a mid block (ResBlock, optional self-attention, ResBlock), GroupNorm + SiLU + conv_out to the
2C posterior moments. The decoder mirrors it with nearest-neighbour upsampling and, as in LDM, one extra ResBlock
per stage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raysweep.tokenizers.latent_config import LatentConfig
from raysweep.tokenizers.posterior import DiagonalGaussian
from raysweep.tokenizers.tokenizer import Tokenizer


def group_norm(channels: int) -> nn.GroupNorm:
    """LDM's GroupNorm(32) from 128 channels up; narrower (CPU) widths keep >= 4 channels per group, because
    one-channel groups zero every channel's spatial mean and the decoder can then no longer paint flat colours."""
    return nn.GroupNorm(math.gcd(channels, min(32, max(1, channels // 4))), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.block = nn.Sequential(group_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                   group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.block(x)  # (B, cout, H, W)


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, residual (the LDM mid block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)  # (B, HW, C) each
        out = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


def mid_block(channels: int, attention: bool) -> nn.Sequential:
    attn: list[nn.Module] = [AttnBlock(channels)] if attention else []
    return nn.Sequential(ResBlock(channels, channels), *attn, ResBlock(channels, channels))


@dataclass(frozen=True)
class ConvVAEConfig:
    """Widths are `base_channels * channel_mults[i]` for resolution stage i; a latent config with more stages than
    multipliers repeats the last one, one with fewer uses the first log2(down) + 1."""

    base_channels: int = 128
    channel_mults: tuple[int, ...] = (1, 1, 2, 2, 4)
    blocks_per_stage: int = 2
    attention: bool = True

    def __post_init__(self) -> None:
        if self.base_channels < 1 or not self.channel_mults or min(self.channel_mults) < 1 or self.blocks_per_stage < 1:
            raise ValueError(f"invalid ConvVAEConfig {self}: base_channels, channel_mults (non-empty) and "
                             "blocks_per_stage must all be >= 1")

    def stage_channels(self, levels: int) -> list[int]:
        mults = list(self.channel_mults[:levels + 1])
        mults += [self.channel_mults[-1]] * (levels + 1 - len(mults))
        return [self.base_channels * m for m in mults]


class ConvVAE(Tokenizer):
    def __init__(self, latent: LatentConfig, image_size: int, config: ConvVAEConfig = ConvVAEConfig()) -> None:
        super().__init__(latent, image_size)
        self.config = config
        chs = config.stage_channels(latent.levels)
        n = config.blocks_per_stage

        enc: list[nn.Module] = [nn.Conv2d(3, chs[0], 3, padding=1)]
        for i, ch in enumerate(chs):  # stage i runs at H / 2^i
            enc += [ResBlock(chs[max(i - 1, 0)] if j == 0 else ch, ch) for j in range(n)]
            if i < latent.levels:
                enc.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.conv_out = nn.Conv2d(chs[-1], 2 * latent.channels, 3, padding=1)
        self.encoder = nn.Sequential(*enc, mid_block(chs[-1], config.attention), group_norm(chs[-1]), nn.SiLU(),
                                     self.conv_out)

        dec: list[nn.Module] = [nn.Conv2d(latent.channels, chs[-1], 3, padding=1), mid_block(chs[-1], config.attention)]
        for i in reversed(range(len(chs))):
            dec += [ResBlock(chs[min(i + 1, len(chs) - 1)] if j == 0 else chs[i], chs[i]) for j in range(n + 1)]
            if i > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(chs[i], chs[i], 3, padding=1)]
        self.conv_final = nn.Conv2d(chs[0], 3, 3, padding=1)
        self.decoder = nn.Sequential(*dec, group_norm(chs[0]), nn.SiLU(), self.conv_final)

    @property
    def encoder_output_layer(self) -> torch.Tensor:
        return self.conv_out.weight

    @property
    def decoder_output_layer(self) -> torch.Tensor:
        return self.conv_final.weight

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(self.encoder(x))  # moments (B, 2C, H/f, W/f)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, 3, H, W)
