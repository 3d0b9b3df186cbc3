"""Materialise the study's image splits once on the driver; every trial then reads the same arrays from disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from raysweep.atomic import atomic_file
from raysweep.config.plan import dataset_key
from raysweep.config.spec import DatasetSpec
from raysweep.data import ImageSet
from raysweep.data.splits import build_splits
from raysweep.engine.store import Store

SPLITS = ("train", "val")


def prepare_images(spec: DatasetSpec, store: Store) -> str:
    """Write `{train,val}.npz` for this dataset config unless present; return the dataset key."""
    key = dataset_key(spec)
    directory = store.data(key)
    if all((directory / f"{s}.npz").is_file() for s in SPLITS):
        return key
    splits = build_splits(spec)  # bad image data raises here, before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    for split, images in zip(SPLITS, splits):
        with atomic_file(directory / f"{split}.npz") as tmp:
            np.savez(tmp, images=images.images, labels=images.labels,
                     masks=images.masks if images.masks is not None else np.zeros(0, np.uint8),
                     class_names=np.array(images.class_names))
    return key


def load_images(root: str | Path, key: str, split: str) -> ImageSet:
    """Read one prepared split (cheap: a few MB for the embedded default)."""
    with np.load(Store(Path(root)).data(key) / f"{split}.npz") as f:
        masks = f["masks"] if f["masks"].size else None
        return ImageSet(images=f["images"], labels=f["labels"], masks=masks,
                        class_names=tuple(str(c) for c in f["class_names"]))
