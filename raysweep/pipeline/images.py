"""Materialise the study's image splits once on the driver; every trial then reads the same arrays from disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from raysweep.config.hashing import config_hash
from raysweep.config.spec import DatasetSpec
from raysweep.data import ImageSet, load_imagefolder, mnist_splits, shapes_splits
from raysweep.pipeline.store import Store

SPLITS = ("train", "val")


def dataset_key(spec: DatasetSpec) -> str:
    return config_hash(spec.model_dump())


def build_splits(spec: DatasetSpec) -> tuple[ImageSet, ImageSet]:
    """The train and val splits in memory (reads every image; writes nothing)."""
    if spec.name in ("shapes", "mnist"):
        splits = shapes_splits if spec.name == "shapes" else mnist_splits
        return splits(spec.train_size, spec.val_size, size=spec.image_size, seed=spec.seed,
                      num_classes=spec.num_classes)
    splits = []
    for split, limit in ((spec.train_split, spec.train_size), (spec.val_split, spec.val_size)):
        images = load_imagefolder(spec.root, split, spec.image_size, mask_root=spec.mask_root,
                                  max_per_class=spec.max_per_class)
        splits.append(images.subset(np.arange(min(limit, len(images)))))
    return splits[0], splits[1]


def prepare_images(spec: DatasetSpec, store: Store) -> str:
    """Write `{train,val}.npz` for this dataset config unless present; return the dataset key."""
    key = dataset_key(spec)
    directory = store.data(key)
    if all((directory / f"{s}.npz").is_file() for s in SPLITS):
        return key
    splits = build_splits(spec)  # bad image data raises here, before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    for split, images in zip(SPLITS, splits):
        tmp = directory / f"{split}.tmp.npz"
        np.savez(tmp, images=images.images, labels=images.labels,
                 masks=images.masks if images.masks is not None else np.zeros(0, np.uint8),
                 class_names=np.array(images.class_names))
        tmp.replace(directory / f"{split}.npz")
    return key


def load_images(root: str | Path, key: str, split: str) -> ImageSet:
    """Read one prepared split (cheap: a few MB for the embedded default)."""
    with np.load(Store(Path(root)).data(key) / f"{split}.npz") as f:
        masks = f["masks"] if f["masks"].size else None
        return ImageSet(images=f["images"], labels=f["labels"], masks=masks,
                        class_names=tuple(str(c) for c in f["class_names"]))
