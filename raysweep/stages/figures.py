"""Image grids for MLflow artifacts (researchers look at reconstructions and samples, not at numbers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from raysweep.atomic import atomic_file


def save_image_grid(images: np.ndarray, path: Path, nrow: int = 8, scale: int = 2) -> Path:
    """uint8 [N,3,H,W] -> one PNG with `nrow` images per row, upscaled so small images stay visible."""
    n, _, h, w = images.shape
    rows = -(-n // nrow)
    canvas = np.full((rows * (h + 2) + 2, nrow * (w + 2) + 2, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        canvas[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + c * (w + 2):2 + c * (w + 2) + w] = img.transpose(1, 2, 0)
    with atomic_file(path, durable=False) as tmp:  # a lost picture is redrawn; a torn one would be kept
        size = (canvas.shape[1] * scale, canvas.shape[0] * scale)
        Image.fromarray(canvas).resize(size, Image.Resampling.NEAREST).save(tmp)
    return path
