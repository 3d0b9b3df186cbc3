"""The embedded `shapes` dataset: seeded procedural images with exact foreground masks, at any resolution.

Each image shows one shape (its class) with a random colour, scale, position and rotation on a textured
background (two random colours mixed by sinusoidal stripes and smooth low-frequency noise, plus pixel noise).
The mask is the shape's analytic inside-test on a 4x4 supersampled grid, thresholded at 50% coverage, and the
image paints the shape colour on exactly the masked pixels, so image and mask never disagree. One channel of the
shape colour is kept at least `CONTRAST` away from the background, so every shape is visible. Vectorised numpy,
float32: 10k 32x32 images take a few seconds.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from raysweep.data.imageset import ImageSet

Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]
SQ3 = np.float32(np.sqrt(3.0))


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Five-pointed star in polar form r(phi) = 0.45 + 0.55 ((1 + cos 5 phi) / 2)^2; cos 5 phi by Chebyshev T5."""
    rho = np.hypot(u, v)
    c = u / np.maximum(rho, 1e-6)
    cos5 = ((16 * c * c - 20) * c * c + 5) * c
    return rho <= 0.45 + 0.55 * (0.5 + 0.5 * cos5) ** 2


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The sextic heart (x^2 + y^2 - 1)^3 <= x^2 y^3, scaled and shifted into the unit disc."""
    x, y = 1.25 * u, 1.25 * v + 0.15
    r2 = x * x + y * y - 1
    return r2 * r2 * r2 <= x * x * y * y * y


# Inside-tests in shape-local coordinates (u, v) = (rotated offset) / radius; every shape lies in the unit disc.
SHAPES: dict[str, Inside] = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.7,
    "triangle": lambda u, v: (v >= -0.5) & (SQ3 * np.abs(u) + v <= 1.0),
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1.0,
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)),
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.55**2),
    "hexagon": lambda u, v: (np.abs(v) <= 0.85) & (SQ3 * np.abs(u) + np.abs(v) <= 1.7),
    "star": _star,
    "ellipse": lambda u, v: u * u + 4 * v * v <= 1.0,
    "heart": _heart,
    "crescent": lambda u, v: (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.8**2),
    "half-disc": lambda u, v: (u * u + v * v <= 1.0) & (v >= -0.1),
}
SHAPE_CLASSES: tuple[str, ...] = tuple(SHAPES)
SUPERSAMPLE = 4
CONTRAST = 0.45
PIXEL_BUDGET = 1 << 22  # supersampled pixels rendered at once (bounds memory to ~16 MB per float32 array)


def shape_masks(labels: np.ndarray, centre: np.ndarray, radius: np.ndarray, angle: np.ndarray,
                size: int) -> np.ndarray:
    """Exact masks uint8 [N,size,size] of shapes `labels` [N] placed at `centre` [N,2] (x, y in pixels, origin at
    the top-left corner), `radius` [N] pixels (the shape's unit disc), rotated by `angle` [N] radians.

    A pixel is foreground when at least half of its SUPERSAMPLE^2 sub-pixel centres pass the inside-test.
    """
    s = SUPERSAMPLE
    fine = ((np.arange(size * s) + 0.5) / s).astype(np.float32)  # sub-pixel centres, pixel units
    masks = np.empty((len(labels), size, size), np.uint8)
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        inv_r = (1.0 / radius[idx]).astype(np.float32)[:, None, None]
        cos = np.cos(angle[idx]).astype(np.float32)[:, None, None] * inv_r
        sin = np.sin(angle[idx]).astype(np.float32)[:, None, None] * inv_r
        dx = fine[None, None, :] - centre[idx, 0].astype(np.float32)[:, None, None]  # (n, 1, W*s)
        dy = fine[None, :, None] - centre[idx, 1].astype(np.float32)[:, None, None]  # (n, H*s, 1)
        inside = SHAPES[SHAPE_CLASSES[k]](dx * cos + dy * sin, dy * cos - dx * sin)  # (n, H*s, W*s)
        rows = inside.view(np.uint8).reshape(len(idx), size, s, size * s).sum(axis=2, dtype=np.uint8)
        hits = rows.reshape(len(idx), size, size, s).sum(axis=3, dtype=np.uint8)  # one axis at a time: fast
        masks[idx] = hits >= (s * s + 1) // 2
    return masks


def _smooth_noise(n: int, size: int, rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """Low-frequency noise float32 [n,size,size] in [0, 1]: a random cells x cells grid, bilinearly upsampled."""
    pos = np.clip((np.arange(size) + 0.5) * cells / size - 0.5, 0, cells - 1)
    lo = np.minimum(pos.astype(int), cells - 2)
    interp = np.zeros((size, cells), np.float32)  # row i mixes grid cells lo[i] and lo[i] + 1
    interp[np.arange(size), lo] = 1 - (pos - lo)
    interp[np.arange(size), lo + 1] = pos - lo
    grid = rng.uniform(0, 1, (n, cells, cells)).astype(np.float32)
    return np.einsum("ia,nab,jb->nij", interp, grid, interp)


def _texture(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [n,size,size] in [0, 1]: random oblique sinusoidal stripes mixed with smooth noise."""
    px = np.arange(size, dtype=np.float32) + 0.5
    freq = (rng.uniform(0.5, 3.0, (n, 2)) * rng.choice([-1, 1], (n, 2)) * 2 * np.pi / size).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin(freq[:, 0, None, None] * px[None, None, :] + freq[:, 1, None, None] * px[None, :, None]
                                 + phase[:, None, None])  # (n, H, W)
    mix = rng.uniform(0, 1, n).astype(np.float32)[:, None, None]
    return mix * stripes + (1 - mix) * _smooth_noise(n, size, rng)


def _background_colours(fg: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two background colours [n,3]; in one random channel both stay >= CONTRAST away from the shape colour."""
    n = len(fg)
    a, b = rng.uniform(0, 1, (n, 3)), rng.uniform(0, 1, (n, 3))
    rows, k = np.arange(n), rng.integers(0, 3, n)
    f = fg[rows, k]
    lo = np.where(f < 0.5, f + CONTRAST, 0.0)
    hi = np.where(f < 0.5, 1.0, f - CONTRAST)
    a[rows, k] = lo + (hi - lo) * a[rows, k]
    b[rows, k] = lo + (hi - lo) * b[rows, k]
    return a, b


def _render_chunk(labels: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """images uint8 [n,3,size,size] and masks uint8 [n,size,size] for one chunk of labels."""
    n = len(labels)
    radius = rng.uniform(0.22, 0.42, n) * size
    centre = rng.uniform(radius[:, None], size - radius[:, None], (n, 2))  # the whole shape stays in frame
    masks = shape_masks(labels, centre, radius, rng.uniform(0, 2 * np.pi, n), size)

    fg = rng.uniform(0, 1, (n, 3))
    bg_a, bg_b = _background_colours(fg, rng)
    bg = bg_a[:, :, None, None] + (bg_b - bg_a)[:, :, None, None] * _texture(n, size, rng)[:, None]  # (n, 3, H, W)
    light = (0.9 + 0.1 * (np.arange(size) + 0.5) / size)[:, None]  # (H, 1): soft top-down light on the shape
    shape = fg[:, :, None, None] * light  # (n, 3, H, 1)
    img = np.where(masks[:, None].astype(bool), shape, bg) + rng.normal(0, 0.02, (n, 3, size, size))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), masks


def make_shapes(n: int, size: int = 32, seed: int = 0, num_classes: int = 10) -> ImageSet:
    """`n` images of `size`x`size`, labels balanced (a shuffled round-robin) over the first `num_classes` shapes."""
    if not 2 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"num_classes must be in [2, {len(SHAPE_CLASSES)}], got {num_classes}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    images = np.empty((n, 3, size, size), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    chunk = max(1, PIXEL_BUDGET // (size * SUPERSAMPLE) ** 2)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        images[sl], masks[sl] = _render_chunk(labels[sl], size, rng)
    return ImageSet(images, labels, masks, SHAPE_CLASSES[:num_classes])


def shapes_splits(n_train: int, n_val: int, size: int = 32, seed: int = 0,
                  num_classes: int = 10) -> tuple[ImageSet, ImageSet]:
    """Train and validation splits from disjoint seed streams (the same call always returns the same data)."""
    train_seed, val_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    return make_shapes(n_train, size, train_seed, num_classes), make_shapes(n_val, size, val_seed, num_classes)
