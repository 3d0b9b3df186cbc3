"""Tokenizer architectures as one-line presets. Adding one is one entry here: a builder
`(LatentConfig, image_size) -> Tokenizer` and a summary. The paper's transformer size is not stated; `vit-base`
follows MAETok / ViT-B (width 768, 12 blocks each for encoder and decoder)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from raysweep.atomic import atomic_file
from raysweep.tokenizers.conv_vae import ConvVAE, ConvVAEConfig
from raysweep.tokenizers.latent_config import LatentConfig, parse_latent_config
from raysweep.tokenizers.tokenizer import Tokenizer
from raysweep.tokenizers.vit_vae import ViTVAE, ViTVAEConfig


@dataclass(frozen=True)
class ArchPreset:
    build: Callable[[LatentConfig, int], Tokenizer]
    summary: str


ARCHITECTURES: dict[str, ArchPreset] = {
    "conv-tiny": ArchPreset(partial(ConvVAE, config=ConvVAEConfig(16, (1, 2, 4), 1, False)),
                            "CPU smoke/study size: widths 16-64, 1 block per stage, no attention"),
    "conv-small": ArchPreset(partial(ConvVAE, config=ConvVAEConfig(64, (1, 2, 2, 4), 1, True)),
                             "single-GPU size: widths 64-256, 1 block per stage, mid attention"),
    "conv-ldm": ArchPreset(partial(ConvVAE, config=ConvVAEConfig(128, (1, 1, 2, 2, 4), 2, True)),
                           "the paper's LDM / VA-VAE f16 VAE: widths 128-512, 2 blocks per stage"),
    "vit-tiny": ArchPreset(partial(ViTVAE, config=ViTVAEConfig(64, 2, 4)), "CPU size ViT VAE: width 64, 2+2 blocks"),
    "vit-small": ArchPreset(partial(ViTVAE, config=ViTVAEConfig(384, 6, 6)), "single-GPU ViT VAE: width 384, 6+6"),
    "vit-base": ArchPreset(partial(ViTVAE, config=ViTVAEConfig(768, 12, 12)),
                           "the paper's transformer tokenizer (ViT-B encoder and decoder): width 768, 12+12 blocks"),
}


def build_tokenizer(arch: str, latent: str | LatentConfig, image_size: int) -> Tokenizer:
    """A freshly initialised tokenizer; ValueError for an unknown preset or a latent config that doesn't fit."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[arch].build(parse_latent_config(latent), image_size)


def save_tokenizer(model: Tokenizer, path: str | Path, architecture: str, latent: str, image_size: int) -> None:
    """A plain dict (build arguments + state dict), loadable with `torch.load(weights_only=True)`."""
    with atomic_file(Path(path)) as tmp:
        torch.save({"architecture": architecture, "latent": latent, "image_size": image_size,
                    "state_dict": model.state_dict()}, tmp)


def load_tokenizer(path: str | Path) -> Tokenizer:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = build_tokenizer(blob["architecture"], blob["latent"], blob["image_size"])
    model.load_state_dict(blob["state_dict"])
    return model
