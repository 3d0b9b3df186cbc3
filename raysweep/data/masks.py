"""Foreground masks at latent resolution (METRICS.md conventions: pixel masks max-pooled to the latent grid)."""
from __future__ import annotations

import numpy as np


def pool_masks(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """uint8 [N,H,W] -> uint8 [N,h,w] by max-pooling: a latent cell is foreground if any of its pixels is."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N,H,W], got shape {masks.shape}")
    n, hh, ww = masks.shape
    h, w = int(grid[0]), int(grid[1])
    if h < 1 or w < 1 or hh % h or ww % w:
        raise ValueError(f"mask size {hh}x{ww} is not divisible by the latent grid {h}x{w}")
    return masks.reshape(n, h, hh // h, w, ww // w).max(axis=(2, 4)).astype(np.uint8)
