"""A study's image splits in memory, from its dataset spec: what `run` materialises and `validate --preflight`
reads to check the data."""
from __future__ import annotations

import numpy as np

from raysweep.config.spec import DatasetSpec
from raysweep.data.imagefolder import load_imagefolder
from raysweep.data.imageset import ImageSet
from raysweep.data.mnist import mnist_splits
from raysweep.data.shapes import shapes_splits


def build_splits(spec: DatasetSpec) -> tuple[ImageSet, ImageSet]:
    """The train and val splits in memory (reads every image; writes nothing)."""
    if spec.name in ("shapes", "mnist"):  # generated, or from a package: no files to read
        splits = shapes_splits if spec.name == "shapes" else mnist_splits
        return splits(spec.train_size, spec.val_size, size=spec.image_size, seed=spec.seed,
                      num_classes=spec.num_classes)
    if spec.root is None:  # the spec refuses this; kept so the type says so too
        raise ValueError(f"dataset.root: required for dataset {spec.name!r}")
    loaded = []
    for split, limit in ((spec.train_split, spec.train_size), (spec.val_split, spec.val_size)):
        images = load_imagefolder(spec.root, split, spec.image_size, mask_root=spec.mask_root,
                                  max_per_class=spec.max_per_class)
        loaded.append(images.subset(np.arange(min(limit, len(images)))))
    return loaded[0], loaded[1]
