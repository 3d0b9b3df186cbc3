"""What the model-dependent metrics share: a tokenizer as plain callables, and the mergeable-state contract.

These metrics need a network (encoder, decoder or a diffusion model's velocity field), so their batches are
images or latents *plus* that network; the state contract is the one of `raysweep.metrics.base` (plain,
picklable dicts merged field-wise by `merge_values`), so any split into batches or actors gives the same result.
Everything runs on the device of the tensors handed in (CUDA when the pipeline has one).
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from raysweep.metrics.base import KeyedMetric, State, Value, merge_values

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
