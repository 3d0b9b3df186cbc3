"""The embedded shapes dataset: determinism, balance, any size, and masks checked against closed-form geometry."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from raysweep.data import SHAPE_CLASSES, make_shapes, shape_masks, shapes_splits


def _lens(r1: float, r2: float, d: float) -> float:
    """Area of the intersection of two discs (radii r1, r2, centres d apart)."""
    a1 = r1**2 * math.acos((d**2 + r1**2 - r2**2) / (2 * d * r1))
    a2 = r2**2 * math.acos((d**2 + r2**2 - r1**2) / (2 * d * r2))
    return a1 + a2 - 0.5 * math.sqrt((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2))


def _heart_area() -> float:
    """Polar integral of the sextic heart (x^2+y^2-1)^3 = x^2 y^3 around the origin, mapped to (u, v) units."""
    thetas = np.linspace(0, 2 * np.pi, 4001)
    radii = [brentq(lambda t, c=math.cos(th), s=math.sin(th): (t * t - 1) ** 3 - t**5 * c * c * s**3, 0.0, 2.0,
                     maxiter=500)
             for th in thetas]
    return 0.5 * np.trapezoid(np.square(radii), thetas) / 1.25**2


A, B = 0.45, 0.55  # star: r(phi) = A + B ((1 + cos 5 phi) / 2)^2
UNIT_AREAS = {  # shape area in units of radius^2, from geometry (not from the renderer)
    "circle": math.pi,
    "square": 1.4**2,
    "triangle": 3 * math.sqrt(3) / 4,
    "diamond": 2.0,
    "cross": 2 * 0.6 * 1.9 - 0.6**2,
    "ring": math.pi * (1 - 0.55**2),
    "hexagon": 1.5 * math.sqrt(3) * (1.7 / math.sqrt(3)) ** 2,
    "star": math.pi * (A**2 + 2 * A * B * 3 / 8 + B**2 * 35 / 128),
    "ellipse": math.pi * 0.5,
    "heart": _heart_area(),
    "crescent": math.pi - _lens(1.0, 0.8, 0.5),
    "half-disc": math.pi / 2 + 0.1 * math.sqrt(0.99) + math.asin(0.1),
}


def _render(name: str, size: int, radius: float, seed: int, n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centre = size / 2 + rng.uniform(-0.5, 0.5, (n, 2))
    labels = np.full(n, SHAPE_CLASSES.index(name))
    return shape_masks(labels, centre, np.full(n, radius), rng.uniform(0, 2 * np.pi, n), size), centre


def test_every_class_has_a_closed_form_area() -> None:
    assert set(UNIT_AREAS) == set(SHAPE_CLASSES) and len(SHAPE_CLASSES) >= 10


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_mask_area_matches_geometry_at_any_rotation(name: str) -> None:
    radius = 40.0
    masks, _ = _render(name, 96, radius, seed=SHAPE_CLASSES.index(name))
    areas = masks.sum(axis=(1, 2))
    np.testing.assert_allclose(areas, UNIT_AREAS[name] * radius**2, rtol=0.01)


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_every_shape_lies_in_its_unit_disc(name: str) -> None:
    radius = 12.0
    masks, centre = _render(name, 32, radius, seed=7)
    yy, xx = np.mgrid[:32, :32] + 0.5
    dist = np.hypot(xx[None] - centre[:, 0, None, None], yy[None] - centre[:, 1, None, None])
    assert masks[dist > radius + 0.6].sum() == 0  # sub-pixel samples lie within 0.53 px of the pixel centre


def test_circle_mask_is_exact_away_from_the_boundary() -> None:
    radius = 9.3
    masks, centre = _render("circle", 32, radius, seed=1)
    yy, xx = np.mgrid[:32, :32] + 0.5
    dist = np.hypot(xx[None] - centre[:, 0, None, None], yy[None] - centre[:, 1, None, None])
    assert (masks[dist < radius - 0.6] == 1).all() and (masks[dist > radius + 0.6] == 0).all()


def test_make_shapes_is_deterministic_per_seed() -> None:
    a, b, c = make_shapes(24, seed=3), make_shapes(24, seed=3), make_shapes(24, seed=4)
    assert a.images.tobytes() == b.images.tobytes() and a.masks.tobytes() == b.masks.tobytes()
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.images.tobytes() != c.images.tobytes()


def test_labels_are_balanced() -> None:
    data = make_shapes(53, size=16, num_classes=10)
    counts = np.bincount(data.labels, minlength=10)
    assert counts.min() == 5 and counts.max() == 6 and counts.sum() == 53
    assert data.class_names == SHAPE_CLASSES[:10] and data.num_classes == 10
    assert make_shapes(12, size=16, num_classes=12).num_classes == 12


@pytest.mark.parametrize("size", [16, 32, 64])
def test_any_size_gives_visible_shapes_separable_from_the_background(size: int) -> None:
    data = make_shapes(30, size=size, seed=size)
    assert data.images.shape == (30, 3, size, size) and data.masks.shape == (30, size, size)
    area = data.masks.mean(axis=(1, 2))
    assert (area > 0.03).all() and (area < 0.7).all()
    # The image paints the shape colour on exactly the mask: in some channel one threshold splits mask from rest.
    for img, mask in zip(data.images.astype(int), data.masks.astype(bool)):
        fg, bg = img[:, mask], img[:, ~mask]  # (3, pixels)
        assert ((fg.max(axis=1) < bg.min(axis=1)) | (fg.min(axis=1) > bg.max(axis=1))).any()


def test_background_is_textured_not_flat() -> None:
    data = make_shapes(20, seed=5)
    bg_std = [img[:, ~mask.astype(bool)].std(axis=1).max() for img, mask in zip(data.images, data.masks)]
    assert np.median(bg_std) > 10  # uint8 levels


def test_splits_are_reproducible_and_disjoint() -> None:
    train, val = shapes_splits(20, 10, size=16, seed=2)
    train2, val2 = shapes_splits(20, 10, size=16, seed=2)
    assert len(train) == 20 and len(val) == 10
    assert train.images.tobytes() == train2.images.tobytes() and val.images.tobytes() == val2.images.tobytes()
    assert not set(map(bytes, train.images)) & set(map(bytes, val.images))
    assert shapes_splits(20, 10, size=16, seed=3)[0].images.tobytes() != train.images.tobytes()


@pytest.mark.parametrize("kwargs", [{"num_classes": 1}, {"num_classes": len(SHAPE_CLASSES) + 1}, {"size": 4},
                                    {"n": -1}])
def test_bad_arguments_raise(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make_shapes(**{"n": 4, **kwargs})
