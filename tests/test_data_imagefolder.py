"""ImageNet-layout folders with ImageNet-S style masks, on a tiny tree of images written here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raysweep.data import load_imagefolder

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _wide_image() -> np.ndarray:
    """24 wide x 12 high: green in the centre 12 columns, red margins (which the centre crop removes)."""
    img = np.zeros((12, 24, 3), np.uint8)
    img[:] = RED
    img[:, 6:18] = GREEN
    return img


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/val/{cat,dog}; masks/val/... for every image, with a foreground block of known position."""
    wide_mask = np.zeros((12, 24), np.uint8)
    wide_mask[:6, 6:18] = 7  # any nonzero value is foreground
    square = np.zeros((16, 16, 3), np.uint8)
    square[:] = BLUE
    square_mask = np.zeros((16, 16, 3), np.uint8)  # ImageNet-S: class id as R + 256 G; (1, 0, 0) is class 1
    square_mask[:8, :8] = (1, 0, 0)
    _save(tmp_path / "img/val/dog/b.png", _wide_image())
    _save(tmp_path / "img/val/dog/a.png", square)
    _save(tmp_path / "img/val/cat/x.JPEG", np.full((16, 16, 3), 200, np.uint8))
    _save(tmp_path / "masks/val/dog/b.png", wide_mask)
    _save(tmp_path / "masks/val/dog/a.png", square_mask)
    _save(tmp_path / "masks/val/cat/x.png", np.full((16, 16), 255, np.uint8))
    (tmp_path / "img/val/cat/notes.txt").write_text("not an image")
    return tmp_path


def test_images_are_sorted_resized_and_centre_cropped(tree: Path) -> None:
    data = load_imagefolder(tree / "img", "val", size=12)
    assert data.class_names == ("cat", "dog") and data.masks is None
    np.testing.assert_array_equal(data.labels, [0, 1, 1])  # cat/x, dog/a, dog/b
    assert data.images.shape == (3, 3, 12, 12) and data.images.dtype == np.uint8
    assert np.abs(data.images[0].astype(int) - 200).max() <= 2  # JPEG of a flat grey
    assert (data.images[1].transpose(1, 2, 0) == BLUE).all()  # 16 -> 12 resize of a flat colour
    assert (data.images[2].transpose(1, 2, 0) == GREEN).all()  # red margins cropped away


def test_masks_follow_the_same_resize_and_crop(tree: Path) -> None:
    data = load_imagefolder(tree / "img", "val", size=8, mask_root=tree / "masks")
    assert data.masks is not None and data.masks.shape == (3, 8, 8) and data.masks.dtype == np.uint8
    assert (data.masks[0] == 1).all()
    expected_square = np.zeros((8, 8), np.uint8)
    expected_square[:4, :4] = 1  # RGB (1, 0, 0) counts as foreground
    np.testing.assert_array_equal(data.masks[1], expected_square)
    expected_wide = np.zeros((8, 8), np.uint8)
    expected_wide[:4] = 1  # top half of the centre crop
    np.testing.assert_array_equal(data.masks[2], expected_wide)


def test_max_per_class_takes_the_first_files(tree: Path) -> None:
    data = load_imagefolder(tree / "img", "val", size=8, max_per_class=1)
    np.testing.assert_array_equal(data.labels, [0, 1])
    assert (data.images[1].transpose(1, 2, 0) == BLUE).all()  # dog/a.png comes before dog/b.png


def test_missing_mask_names_the_path(tree: Path) -> None:
    (tree / "masks/val/dog/b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"dog/b\.png"):
        load_imagefolder(tree / "img", "val", size=8, mask_root=tree / "masks")


def test_mask_of_another_size_is_rejected(tree: Path) -> None:
    _save(tree / "masks/val/dog/a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"a\.png"):
        load_imagefolder(tree / "img", "val", size=8, mask_root=tree / "masks")


def test_missing_and_empty_folders_raise(tree: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train"):
        load_imagefolder(tree / "img", "train", size=8)
    (tree / "empty/val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no class"):
        load_imagefolder(tree / "empty", "val", size=8)
    (tree / "empty/val/owl").mkdir()
    with pytest.raises(FileNotFoundError, match="owl"):
        load_imagefolder(tree / "empty", "val", size=8)
    with pytest.raises(ValueError, match="max_per_class"):
        load_imagefolder(tree / "img", "val", size=8, max_per_class=0)
