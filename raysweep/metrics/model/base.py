"""What the model-dependent metrics share: a tokenizer as plain callables, the typed bases that say how a metric
runs on a tokenizer or on a diffusion model, and the mergeable-state contract.

These metrics need a network (encoder, decoder or a diffusion model's velocity field), so their batches are
images or latents *plus* that network; the state contract is the one of `raysweep.metrics.base` (plain,
picklable dicts merged field-wise by `merge_values`), so any split into batches or actors gives the same result.
Everything runs on the device of the tensors handed in (CUDA when the pipeline has one).

A stage builds one `TokenizerInputs` (or `DiffusionInputs`) and calls `run` on every metric of its job; each metric
takes what it needs from it (images, reference images, latents of a split, the study's FID) and returns a
`ModelOutput`, so a new metric is a class and a registry entry, never a stage edit.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from raysweep.metrics.base import Consumes, KeyedMetric, State, Value, merge_values

Encode = Callable[[torch.Tensor], torch.Tensor]  # images (B, 3, H, W) in [-1, 1] -> latents (B, C, h, w)
Decode = Callable[[torch.Tensor], torch.Tensor]  # latents (B, C, h, w) -> images (B, 3, H, W) in [-1, 1]
VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t (B,), y (B,)) -> v


@dataclass(frozen=True)
class Codec:
    """A tokenizer seen through the standardisation the diffusion model sees: per-channel mean/std [C] of the
    written latent set (None = identity). `encode`/`decode` work on un-normalised latents, as the tokenizer does."""

    encode: Encode
    decode: Decode | None = None
    channel_mean: torch.Tensor | None = None
    channel_std: torch.Tensor | None = None

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.channel_mean is None or self.channel_std is None:
            return None
        std = torch.where(self.channel_std > 0, self.channel_std, torch.ones_like(self.channel_std))
        return (self.channel_mean.to(like)[:, None, None], std.to(like)[:, None, None])  # (C, 1, 1) each

    def encode_standardised(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> standardised latents (B, C, h, w)."""
        z = self.encode(images)
        stats = self._stats(z)
        return z if stats is None else (z - stats[0]) / stats[1]

    def decode_standardised(self, z: torch.Tensor) -> torch.Tensor:
        """standardised latents (B, C, h, w) -> images (B, 3, H, W)."""
        if self.decode is None:
            raise ValueError("this metric needs a decoder; the Codec was built without one")
        stats = self._stats(z)
        return self.decode(z if stats is None else z * stats[1] + stats[0])


class ModelMetric(KeyedMetric):
    """A model-dependent metric as an accumulator: `init`, `update` (metric-specific inputs), `merge`, `finalize`."""

    def init(self) -> State:
        return {}

    def merge(self, a: State, b: State) -> State:
        if not a or not b:
            return a or b
        return merge_values(a, b)

    def finalize(self, state: State) -> dict[str, Value]:
        if not state:
            raise ValueError(f"metric '{self.name}': nothing was accumulated")
        return self._finalize(state)

    @abstractmethod
    def _finalize(self, state: State) -> dict[str, Value]:
        """A non-empty merged state -> {key: float | array}."""


@dataclass(frozen=True)
class ModelOutput:
    """A model metric's values, and files for the stage to write beside its job's marker and log on the run:
    image grids (file name -> images (N, 3, H, W) in [-1, 1]) and `curves_file`, an npz of the values' curves."""

    values: dict[str, Value]
    grids: dict[str, torch.Tensor] = field(default_factory=dict)
    curves_file: str | None = None


@dataclass(frozen=True)
class TokenizerInputs:
    """What the model-metric stage offers a tokenizer metric. `latents(split)` reads a split's latents (the
    written Parquet, on `device`) standardised as the codec does, None where that split was not written; `fid`
    scores images (N, 3, H, W) in [-1, 1] against the validation images with the study's feature network. Both
    are lazy: a study without a metric that calls them never pays for them."""

    codec: Codec
    images: torch.Tensor  # validation images (N, 3, H, W) in [-1, 1], on the CPU
    latents: Callable[[str], torch.Tensor | None]
    fid: Callable[[torch.Tensor], float]
    device: torch.device
    max_images: int = 64  # images an `ImageMetric` runs on (the first of the validation split)
    batch_size: int = 16  # images per forward pass


@dataclass(frozen=True)
class DiffusionInputs:
    """What the diffusion-metric stage offers a diffusion metric: the tokenizer's validation latents (N, C, H, W)
    standardised with the training latents' statistics (what the model was trained on), on the CPU, their labels
    (N,) and sample ids [N], and the trained velocity field, which runs on `device`."""

    latents: torch.Tensor
    labels: torch.Tensor
    sample_ids: np.ndarray
    velocity: VelocityFn
    device: torch.device
    batch_size: int = 256


class TokenizerMetric(KeyedMetric):
    """A metric of the tokenizer itself: run once per tokenizer by its model-metric job."""

    consumes: ClassVar[Consumes] = "tokenizer"

    @abstractmethod
    def run(self, data: TokenizerInputs) -> ModelOutput:
        """The metric of the tokenizer that `data.codec` wraps."""


class DiffusionMetric(KeyedMetric):
    """A metric of a trained diffusion model: run once per diffusion run by its diffusion-metric job."""

    consumes: ClassVar[Consumes] = "diffusion"

    @abstractmethod
    def run(self, data: DiffusionInputs) -> ModelOutput:
        """The metric of the velocity field `data.velocity`."""


class ImageMetric(ModelMetric, TokenizerMetric):
    """A tokenizer metric accumulated over batches of the first `max_images` validation images."""

    def run(self, data: TokenizerInputs) -> ModelOutput:
        state, images = self.init(), data.images[:data.max_images]
        for i in range(0, len(images), data.batch_size):
            state = self.update_images(state, images[i:i + data.batch_size].to(data.device), data)
        return ModelOutput(self.finalize(state))

    @abstractmethod
    def update_images(self, state: State, images: torch.Tensor, data: TokenizerInputs) -> State:
        """One batch of images (B, 3, H, W) in [-1, 1], on `data.device`, into the state."""
