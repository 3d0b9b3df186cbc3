"""A labelled image split with optional exact foreground masks — the one in-memory image type of raysweep."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ImageSet:
    """images uint8 [N,3,H,W]; labels int64 [N]; masks uint8 {0,1} [N,H,W] at pixel resolution, or None."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N,3,H,W], got {self.images.dtype} {self.images.shape}")
        n, _, h, w = self.images.shape
        if self.labels.dtype != np.int64 or self.labels.shape != (n,):
            raise ValueError(f"labels must be int64 [{n}], got {self.labels.dtype} {self.labels.shape}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in [0, {len(self.class_names)}), got {self.labels.min()}.."
                             f"{self.labels.max()}")
        if self.masks is not None and (self.masks.dtype != np.uint8 or self.masks.shape != (n, h, w)):
            raise ValueError(f"masks must be uint8 [{n},{h},{w}], got {self.masks.dtype} {self.masks.shape}")
        if self.masks is not None and n and self.masks.max() > 1:
            raise ValueError(f"masks must hold 0 or 1, got values up to {self.masks.max()}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, idx: np.ndarray | slice) -> ImageSet:
        """The images at `idx` (indices, boolean mask or slice), same class names."""
        return ImageSet(self.images[idx], self.labels[idx], None if self.masks is None else self.masks[idx],
                        self.class_names)

    def as_float(self) -> torch.Tensor:
        """float32 [N,3,H,W] in [-1, 1], the input range of every tokenizer."""
        return torch.from_numpy(self.images).float().div_(127.5).sub_(1.0)
