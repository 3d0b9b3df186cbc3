"""ImageNet-layout image folders (`root/split/<class>/*.JPEG`) with optional ImageNet-S style mask PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from raysweep.data.imageset import ImageSet

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def _resize_crop(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Resize the shorter side to `size`, then centre-crop (the usual ImageNet evaluation transform)."""
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), resample)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _foreground(mask: Image.Image) -> Image.Image:
    """Binary mode-'L' image, 1 where any colour channel is nonzero (ImageNet-S stores class ids as R + 256 G).

    Alpha is ignored, and palette images are judged by their index, not by the colour it maps to.
    """
    arr = np.asarray(mask)
    if arr.ndim == 3:
        arr = arr[..., :1] if mask.mode == "LA" else arr[..., :3]
        arr = np.asarray(arr.any(axis=2))
    return Image.fromarray((arr != 0).astype(np.uint8))


def _load_mask(path: Path, image: Path, image_size: tuple[int, int], size: int) -> np.ndarray:
    """uint8 {0,1} [size,size] foreground of `image` (whose original size is `image_size`)."""
    if not path.is_file():
        raise FileNotFoundError(f"mask for image '{image}' not found: '{path}' does not exist")
    with Image.open(path) as mask:
        if mask.size != image_size:
            raise ValueError(f"mask '{path}' is {mask.size[0]}x{mask.size[1]} but its image is "
                             f"{image_size[0]}x{image_size[1]}")
        return np.asarray(_resize_crop(_foreground(mask), size, Image.Resampling.NEAREST))


def _read_rgb(path: Path, size: int) -> tuple[Image.Image, tuple[int, int]]:
    """The resized RGB image and its original size; a corrupt or truncated file is a ValueError naming it (PIL's
    own message for a truncated file does not)."""
    try:
        with Image.open(path) as img:
            return _resize_crop(img.convert("RGB"), size, Image.Resampling.BICUBIC), img.size
    except OSError as err:
        raise ValueError(f"image '{path}' is not a readable image ({type(err).__name__}: {err})") from None


def load_imagefolder(root: str | Path, split: str, size: int, mask_root: str | Path | None = None,
                     max_per_class: int | None = None) -> ImageSet:
    """Read `root/split/<class>/*` sorted by class then file name into uint8 [N,3,size,size].

    Masks (if `mask_root`) come from `mask_root/split/<class>/<stem>.png`, nonzero = foreground, resized and cropped
    with nearest neighbour exactly like the image; every image must have one.
    """
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1 or None, got {max_per_class}")
    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(f"image folder '{base}' does not exist (expected root/split/<class>/*)")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"image folder '{base}' has no class sub-directories")
    images, labels, masks = [], [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (base / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"class folder '{base / name}' has no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in files[:max_per_class]:
            rgb, image_size = _read_rgb(path, size)
            images.append(np.asarray(rgb).transpose(2, 0, 1))
            labels.append(label)
            if mask_root is not None:
                mask_path = Path(mask_root) / split / name / f"{path.stem}.png"
                masks.append(_load_mask(mask_path, path, image_size, size))
    return ImageSet(np.stack(images), np.asarray(labels, np.int64), np.stack(masks) if masks else None,
                    tuple(classes))
