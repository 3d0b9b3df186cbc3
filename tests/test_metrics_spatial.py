"""LDS, CDS and SRSS against brute-force loops, smooth-versus-noise ordering and a constructed SRSS closed form."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from raysweep.metrics import SpatialDistances, SpatialStructure, resolve_distances, run_accumulator

KEYS = ("latent/spatial/lds", "latent/spatial/cds", "latent/spatial/srss")


def run(metric: SpatialStructure, latent: np.ndarray, mask: np.ndarray | None) -> tuple[float, float, float]:
    batch = SimpleNamespace(sample_id=np.arange(len(latent)), label=np.zeros(len(latent), int),
                            latent=latent.astype(np.float32), fg_mask=mask)
    out = run_accumulator(metric, [batch])
    return out[KEYS[0]], out[KEYS[1]], out[KEYS[2]]


def test_distances_scale_with_the_grid():
    assert resolve_distances(16, 16) == SpatialDistances(far_dist=6, dmax=8, d_neg=6)
    assert resolve_distances(8, 8) == SpatialDistances(far_dist=3, dmax=4, d_neg=3)
    assert resolve_distances(4, 4) == SpatialDistances(far_dist=2, dmax=2, d_neg=2)
    assert resolve_distances(8, 8, far_dist=5) == SpatialDistances(far_dist=5, dmax=4, d_neg=3)
    assert SpatialStructure().params((4, 8, 8))["d_neg"] == 3
    with pytest.raises(ValueError, match="1x2"):
        resolve_distances(1, 2)


def brute_force(latent: np.ndarray, mask: np.ndarray, d: SpatialDistances,
                per_image: bool = True) -> tuple[float, float, float]:
    """The definitions, pair by pair and anchor by anchor, on whole-set per-channel standardised latents.

    SRSS as iREPA defines it (End2End-Diffusion/iREPA metrics/spatial_metrics.py `metric_srss`, commit
    99ad4ac234efe8de52ce157120f72856e836d09f): per image the mean over its valid foreground anchors, then the mean
    over the images that have one; `per_image=False` pools all anchors instead."""
    x = (latent - latent.mean(axis=(0, 2, 3), keepdims=True)) / latent.std(axis=(0, 2, 3), keepdims=True)
    n, _, h, w = x.shape
    positions = [(r, c) for r in range(h) for c in range(w)]
    by_distance: dict[int, list[float]] = {}
    anchor_scores, image_scores = [], []
    for i in range(n):
        mine = []
        tokens = [x[i, :, r, c] / np.linalg.norm(x[i, :, r, c]) for r, c in positions]
        fg = [bool(mask[i, r, c]) for r, c in positions]
        for p, (rp, cp) in enumerate(positions):
            pos, neg = [], []
            for q, (rq, cq) in enumerate(positions):
                dist, cos = abs(rp - rq) + abs(cp - cq), float(tokens[p] @ tokens[q])
                if dist > 0:
                    by_distance.setdefault(dist, []).append(cos)
                if dist == 1 and fg[q]:
                    pos.append(cos)
                if dist >= d.d_neg and not fg[q]:
                    neg.append(cos)
            if fg[p] and pos and neg and 2 <= sum(fg) < len(fg):
                mine.append(np.mean(pos) - np.mean(neg))
        anchor_scores += mine
        image_scores += [np.mean(mine)] if mine else []
    far = [c for dist, cs in by_distance.items() if dist >= d.far_dist for c in cs]
    lds = np.mean(by_distance[1]) - np.mean(far)
    ds = np.arange(1, d.dmax + 1)
    slope = np.polyfit(ds, [np.mean(by_distance[k]) for k in ds], 1)[0]
    return float(lds), float(-slope), float(np.mean(image_scores if per_image else anchor_scores))


def test_matches_brute_force_definitions():
    rng = np.random.default_rng(0)
    latent = gaussian_filter(rng.normal(size=(4, 3, 5, 6)), sigma=(0, 0, 1, 1)) + np.array([1.0, -2.0, 0.5])[
        None, :, None, None]
    mask = (rng.random((4, 5, 6)) < 0.4).astype(np.uint8)
    mask[3] = 1  # no background: this image adds no SRSS anchors
    expected = brute_force(latent.astype(np.float32).astype(np.float64), mask, resolve_distances(5, 6))
    # tokens are float32 (their sums float64): agreement to float32 rounding
    assert run(SpatialStructure(), latent, mask) == pytest.approx(expected, rel=1e-6)


def test_smooth_maps_score_higher_than_white_noise():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(20, 4, 8, 8))
    smooth = gaussian_filter(noise, sigma=(0, 0, 2, 2), mode="wrap")
    lds_s, cds_s, _ = run(SpatialStructure(), smooth, None)
    lds_n, cds_n, _ = run(SpatialStructure(), noise, None)
    assert lds_s > lds_n + 0.3 and cds_s > cds_n + 0.05
    assert abs(lds_n) < 0.05 and abs(cds_n) < 0.02


def test_srss_is_one_when_foreground_and_background_tokens_are_orthogonal():
    latent = np.zeros((5, 3, 8, 8))
    mask = np.zeros((5, 8, 8), dtype=np.uint8)
    for i in range(5):
        mask[i, i:i + 3, 2:5] = 1
    latent[:, 0] = mask  # foreground tokens point along e0
    latent[:, 1] = 1 - mask  # background tokens along e1
    metric = SpatialStructure(channel_mean=[0.0, 0.0, 0.0], channel_std=[1.0, 1.0, 1.0])
    assert run(metric, latent, mask)[2] == pytest.approx(1.0)


def test_given_statistics_equal_accumulated_ones():
    rng = np.random.default_rng(2)
    latent = (rng.normal(size=(12, 3, 6, 6)) * [[[2.0]], [[0.5]], [[1.0]]] + [[[3.0]], [[0.0]], [[-1.0]]])
    latent = latent.astype(np.float32)
    mask = (rng.random((12, 6, 6)) < 0.5).astype(np.uint8)
    x = latent.astype(np.float64)
    given = SpatialStructure(channel_mean=list(x.mean(axis=(0, 2, 3))), channel_std=list(x.std(axis=(0, 2, 3))))
    assert run(given, latent, mask) == pytest.approx(run(SpatialStructure(), latent, mask), rel=1e-9)


def test_without_masks_srss_is_nan_and_the_rest_finite():
    lds, cds, srss = run(SpatialStructure(), np.random.default_rng(3).normal(size=(3, 2, 8, 8)), None)
    assert np.isfinite(lds) and np.isfinite(cds) and np.isnan(srss)


def test_statistics_must_match_the_channel_count():
    metric = SpatialStructure(channel_mean=[0.0], channel_std=[1.0])
    with pytest.raises(ValueError, match="one per channel"):
        run(metric, np.zeros((2, 3, 4, 4)), None)
    with pytest.raises(ValueError, match="both"):
        SpatialStructure(channel_mean=[0.0])


def test_srss_averages_per_image_as_irepa_and_merges_exactly():
    """Objects of very different sizes: iREPA's per-image mean and the anchor-pooled mean differ, each matches its
    brute-force reference, and any split of the images gives the same per-image value."""
    rng = np.random.default_rng(5)
    latent = gaussian_filter(rng.normal(size=(6, 3, 8, 8)), sigma=(0, 0, 1, 1)).astype(np.float32)
    mask = np.zeros((6, 8, 8), np.uint8)
    for i, side in enumerate((2, 2, 3, 5, 6, 6)):
        mask[i, :side, :side] = 1
    latent[:, 0] += 2.0 * mask  # foreground tokens lean one way: SRSS is clearly positive
    d = resolve_distances(8, 8)
    image = run(SpatialStructure(), latent, mask)[2]
    anchor = run(SpatialStructure(srss_average="anchor"), latent, mask)[2]
    assert image == pytest.approx(brute_force(latent.astype(np.float64), mask, d)[2], rel=1e-6)
    assert anchor == pytest.approx(brute_force(latent.astype(np.float64), mask, d, per_image=False)[2], rel=1e-6)
    assert abs(image - anchor) > 0.01 * abs(anchor)
    stats = {"channel_mean": list(latent.mean(axis=(0, 2, 3)).astype(np.float64)),
             "channel_std": list(latent.std(axis=(0, 2, 3)).astype(np.float64))}
    metric = SpatialStructure(**stats)
    parts = [SimpleNamespace(sample_id=np.arange(len(latent))[sl], label=np.zeros(len(latent), int)[sl],
                             latent=latent[sl], fg_mask=mask[sl]) for sl in (slice(0, 1), slice(1, 4), slice(4, 6))]
    whole = run_accumulator(metric, [SimpleNamespace(sample_id=np.arange(6), label=np.zeros(6, int), latent=latent,
                                                     fg_mask=mask)])
    assert run_accumulator(metric, parts)[KEYS[2]] == pytest.approx(whole[KEYS[2]], rel=1e-7)  # float32 tokens


def test_srss_average_is_checked():
    with pytest.raises(ValueError, match="srss_average must be one of image, anchor"):
        SpatialStructure(srss_average="pixel")
