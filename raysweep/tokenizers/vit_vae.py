"""Transformer KL-VAE (ViT encoder and decoder over patches) for any `f{down}d{ch}` latent configuration.

The patch size is the downsampling factor, so every latent position is one image patch: encoder = patch
embedding + fixed 2-D sin-cos positions + pre-norm transformer blocks + LayerNorm + linear to the 2C posterior
moments per token; decoder = linear C -> width + positions + blocks + LayerNorm + linear to the patch's pixels.
Attention, MLP and position embedding are the diffusion backbones' blocks (QK-norm attention, GELU MLP).
`encode_masked` swaps chosen patch tokens for a learnable mask token before the encoder blocks (MAETok-style
token masking, used by the `mae` regularizer).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raysweep.nn.blocks import Attention, Mlp, layer_norm, sincos_pos_embed_2d
from raysweep.tokenizers.latent_config import LatentConfig
from raysweep.tokenizers.posterior import DiagonalGaussian
from raysweep.tokenizers.tokenizer import Tokenizer


@dataclass(frozen=True)
class ViTVAEConfig:
    width: int = 768
    depth: int = 12  # blocks in the encoder and, again, in the decoder
    heads: int = 12
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.width < 4 or self.width % 4 or self.depth < 1 or self.heads < 1 or self.width % self.heads:
            raise ValueError(f"invalid ViTVAEConfig {self}: width must be a multiple of 4 and of heads, depth >= 1")


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)); tokens (B, T, D)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = layer_norm(dim, True), layer_norm(dim, True)
        self.attn = Attention(dim, heads, layer_norm)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTVAE(Tokenizer):
    def __init__(self, latent: LatentConfig, image_size: int, config: ViTVAEConfig = ViTVAEConfig()) -> None:
        super().__init__(latent, image_size)
        self.config = config
        p, d = latent.down, config.width
        self.patch_embed = nn.Conv2d(3, d, p, stride=p)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.mask_token, std=0.02)
        self.enc_blocks = nn.Sequential(*(Block(d, config.heads, config.mlp_ratio) for _ in range(config.depth)))
        self.enc_norm = layer_norm(d, True)
        self.to_moments = nn.Linear(d, 2 * latent.channels)
        self.from_latent = nn.Linear(latent.channels, d)
        self.dec_blocks = nn.Sequential(*(Block(d, config.heads, config.mlp_ratio) for _ in range(config.depth)))
        self.dec_norm = layer_norm(d, True)
        self.to_pixels = nn.Linear(d, 3 * p * p)

    @property
    def encoder_output_layer(self) -> torch.Tensor:
        return self.to_moments.weight

    @property
    def decoder_output_layer(self) -> torch.Tensor:
        return self.to_pixels.weight

    def positions(self, grid: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Fixed sin-cos embedding (1, h·w, D) of a grid, computed per call so any image or latent size works."""
        return sincos_pos_embed_2d(self.config.width, (grid[0], grid[1])).to(like)[None]

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        return self.encode_masked(x, None)

    def encode_masked(self, x: torch.Tensor, mask: torch.Tensor | None) -> DiagonalGaussian:
        """x (B, 3, H, W); mask (B, T) bool, True = replace that patch token by the mask token (None: no masking)."""
        grid = self.patch_embed(x)  # (B, D, h, w)
        tokens = grid.flatten(2).transpose(1, 2)  # (B, T, D)
        if mask is not None:
            tokens = torch.where(mask[..., None].to(tokens.device), self.mask_token.to(tokens.dtype), tokens)
        h = self.enc_norm(self.enc_blocks(tokens + self.positions(grid.shape[-2:], tokens)))  # (B, T, D)
        moments = self.to_moments(h).transpose(1, 2).unflatten(2, grid.shape[-2:])  # (B, 2C, h, w)
        return DiagonalGaussian(moments)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C, h, w) -> images (B, 3, h·f, w·f); any grid (eq decodes rescaled latents)."""
        b, _, h, w = z.shape
        tokens = self.from_latent(z.flatten(2).transpose(1, 2))  # (B, T, D)
        x = self.dec_norm(self.dec_blocks(tokens + self.positions((h, w), tokens)))  # (B, T, D)
        p = self.latent.down
        patches = self.to_pixels(x).reshape(b, h, w, 3, p, p)  # (B, h, w, 3, p, p)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(b, 3, h * p, w * p)
