"""ImageSet validation and conversion, and max-pooling masks to the latent grid."""
from __future__ import annotations

import numpy as np
import pytest

from raysweep.data import ImageSet, pool_masks


def _set(n: int = 4, h: int = 6, w: int = 8, masks: bool = True) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, (n, 3, h, w), dtype=np.uint8), np.arange(n, dtype=np.int64) % 2,
                    rng.integers(0, 2, (n, h, w), dtype=np.uint8) if masks else None, ("a", "b"))


def test_as_float_maps_uint8_range_onto_minus_one_one() -> None:
    images = np.zeros((1, 3, 2, 2), np.uint8)
    images[0, :, 0, 0], images[0, :, 1, 1] = 255, 128
    x = ImageSet(images, np.zeros(1, np.int64), None, ("a",)).as_float()
    assert x.dtype.is_floating_point and x.shape == (1, 3, 2, 2)
    assert x[0, 0, 0, 0] == 1.0 and x[0, 0, 0, 1] == -1.0 and abs(float(x[0, 0, 1, 1]) - 128 / 127.5 + 1) < 1e-7


def test_subset_keeps_rows_aligned() -> None:
    data = _set()
    idx = np.array([3, 1])
    sub = data.subset(idx)
    assert len(sub) == 2 and sub.class_names == data.class_names and sub.num_classes == 2
    np.testing.assert_array_equal(sub.images, data.images[idx])
    np.testing.assert_array_equal(sub.masks, data.masks[idx])
    np.testing.assert_array_equal(sub.labels, data.labels[idx])
    assert _set(masks=False).subset(slice(0, 2)).masks is None


@pytest.mark.parametrize("change, message", [
    ({"images": np.zeros((2, 3, 4, 4), np.float32)}, "images"),
    ({"images": np.zeros((2, 1, 4, 4), np.uint8)}, "images"),
    ({"labels": np.zeros(3, np.int64)}, "labels"),
    ({"labels": np.zeros(2, np.int32)}, "labels"),
    ({"labels": np.array([0, 2])}, "labels"),
    ({"masks": np.zeros((2, 4, 5), np.uint8)}, "masks"),
    ({"masks": np.zeros((2, 4, 4), bool)}, "masks"),
    ({"masks": np.full((2, 4, 4), 255, np.uint8)}, "masks"),
])
def test_inconsistent_fields_raise(change: dict[str, np.ndarray], message: str) -> None:
    fields = {"images": np.zeros((2, 3, 4, 4), np.uint8), "labels": np.array([0, 1]),
              "masks": np.zeros((2, 4, 4), np.uint8), "class_names": ("a", "b")}
    with pytest.raises(ValueError, match=message):
        ImageSet(**{**fields, **change})


def test_pool_masks_is_blockwise_max() -> None:
    rng = np.random.default_rng(1)
    masks = (rng.random((3, 8, 12)) < 0.1).astype(np.uint8)
    pooled = pool_masks(masks, (2, 3))
    assert pooled.shape == (3, 2, 3) and pooled.dtype == np.uint8
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(pooled[:, i, j], masks[:, 4 * i:4 * i + 4, 4 * j:4 * j + 4].max(axis=(1, 2)))
    np.testing.assert_array_equal(pool_masks(masks, (8, 12)), masks)


def test_pool_masks_single_pixel_marks_exactly_its_cell() -> None:
    masks = np.zeros((1, 16, 16), np.uint8)
    masks[0, 9, 2] = 1
    expected = np.zeros((1, 4, 4), np.uint8)
    expected[0, 2, 0] = 1
    np.testing.assert_array_equal(pool_masks(masks, (4, 4)), expected)


@pytest.mark.parametrize("grid", [(3, 4), (4, 5), (0, 4)])
def test_pool_masks_rejects_a_grid_that_does_not_divide(grid: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="latent grid"):
        pool_masks(np.zeros((1, 16, 16), np.uint8), grid)
