"""Latent configurations `f{down}d{ch}`: spatial downsampling factor and channel count (f16d32 = the paper's)."""
from __future__ import annotations

import re
from dataclasses import dataclass

PATTERN = re.compile(r"f(\d+)d(\d+)")
FORM = "f{down}d{channels} with down a power of two >= 1 and channels >= 1, e.g. f16d32 or f4d4"


@dataclass(frozen=True)
class LatentConfig:
    down: int
    channels: int

    def __post_init__(self) -> None:
        if self.down < 1 or self.down & (self.down - 1) or self.channels < 1:
            raise ValueError(f"latent config f{self.down}d{self.channels} is invalid; expected {FORM}")

    @property
    def name(self) -> str:
        return f"f{self.down}d{self.channels}"

    @property
    def levels(self) -> int:
        """Number of stride-2 stages: log2(down)."""
        return self.down.bit_length() - 1

    def latent_shape(self, image_size: int) -> tuple[int, int, int]:
        """(C, h, w) of the latent of a square `image_size` image."""
        if image_size < 1 or image_size % self.down:
            raise ValueError(f"image size {image_size} is not a positive multiple of the downsampling factor "
                             f"{self.down} of latent config {self.name}")
        return (self.channels, image_size // self.down, image_size // self.down)


def parse_latent_config(value: str | LatentConfig) -> LatentConfig:
    """`"f16d32"` -> LatentConfig(down=16, channels=32); a LatentConfig passes through."""
    if isinstance(value, LatentConfig):
        return value
    match = PATTERN.fullmatch(str(value))
    if not match:
        raise ValueError(f"latent config {value!r} is not of the form {FORM}")
    return LatentConfig(int(match.group(1)), int(match.group(2)))
