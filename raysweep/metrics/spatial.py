"""Spatial structure of latent token maps (METRICS.md §3, iREPA definitions): LDS, CDS, SRSS, higher is better.

Tokens are the H·W positions of a per-channel standardised latent, L2-normalised over channels; similarity is
cosine, distance is Manhattan on the grid. The state holds per-distance sums and counts of token cosines and the
sum and count of SRSS anchor scores, all exact under merge.

Cosines are not linear in the standardisation statistics, so they need them while streaming: pass the set's
per-channel `channel_mean` / `channel_std` (the latent Parquet footer holds them). Without them the state keeps
the raw latents and masks and finalize does the same sums with the statistics of the accumulated set (exact, but
it holds every latent in memory).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from raysweep.metrics.base import Accumulator, Batch, State, Value, channel_moments, merge_values

REFERENCE_GRID = 16  # the iREPA distances below are for a 16x16 latent grid
REFERENCE_DISTANCES = {"far_dist": 6, "dmax": 8, "d_neg": 6}
CHUNK_IMAGES = 64  # images per cosine block in summarise: bounds the [chunk, HW, HW] memory


@dataclass(frozen=True)
class SpatialDistances:
    """Grid distances in use: LDS far pairs (d >= far_dist), CDS fit range (1..dmax), SRSS negatives (d >= d_neg)."""

    far_dist: int
    dmax: int
    d_neg: int


def resolve_distances(h: int, w: int, far_dist: int | None = None, dmax: int | None = None,
                      d_neg: int | None = None) -> SpatialDistances:
    """Given values, else the 16x16 defaults scaled by min(H, W)/16: max(1, floor(v·min(H,W)/16 + 1/2)).
    All are capped at the largest distance H+W−2, and dmax is at least 2 (a slope needs two points)."""
    largest = h + w - 2
    given = {"far_dist": far_dist, "dmax": dmax, "d_neg": d_neg}
    values = {name: min(largest, v if v is not None
                        else max(1, int(np.floor(ref * min(h, w) / REFERENCE_GRID + 0.5))))
              for (name, ref), v in zip(REFERENCE_DISTANCES.items(), given.values())}
    values["dmax"] = max(2, values["dmax"])
    if values["dmax"] > largest or min(values.values()) < 1:
        raise ValueError(f"spatial: grid {h}x{w} too small for distances {values} (largest distance {largest})")
    return SpatialDistances(**values)


@lru_cache(maxsize=16)
def grid_distances(h: int, w: int) -> np.ndarray:
    """Manhattan distance between every pair of grid positions, [HW, HW] int."""
    r, c = np.divmod(np.arange(h * w), w)
    d = np.abs(r[:, None] - r[None, :]) + np.abs(c[:, None] - c[None, :])
    d.setflags(write=False)
    return d


def token_cosines(latent: np.ndarray) -> np.ndarray:
    """latent [B,C,H,W] (standardised) -> cosine similarity of every token pair, [B, HW, HW] float64."""
    b, c = latent.shape[:2]
    tokens = np.asarray(latent, np.float64).reshape(b, c, -1).transpose(0, 2, 1)  # (B, HW, C)
    norms = np.linalg.norm(tokens, axis=2, keepdims=True)
    tokens = tokens / np.where(norms > 0, norms, 1.0)
    return tokens @ tokens.transpose(0, 2, 1)


def srss_anchor_scores(cos: np.ndarray, mask: np.ndarray, dist: np.ndarray, d_neg: int) -> np.ndarray:
    """SRSS score of every valid foreground anchor, flattened over the batch.

    cos [B,P,P], mask [B,P] bool, dist [P,P]. An anchor's score is its mean cosine to foreground tokens at
    distance 1 minus its mean cosine to background tokens at distance >= d_neg; anchors lacking either are
    dropped (which also drops every image with < 2 foreground or no background tokens).
    """
    fg = mask.astype(np.float64)  # (B, P)
    near, far = (dist == 1).astype(np.float64), (dist >= d_neg).astype(np.float64)
    bg = 1.0 - fg
    pos_sum = ((cos * near) @ fg[:, :, None])[..., 0]  # (B, P)
    neg_sum = ((cos * far) @ bg[:, :, None])[..., 0]
    pos_cnt, neg_cnt = fg @ near, bg @ far  # `near` and `far` are symmetric
    valid = mask & (pos_cnt > 0) & (neg_cnt > 0)
    return pos_sum[valid] / pos_cnt[valid] - neg_sum[valid] / neg_cnt[valid]


class SpatialStructure(Accumulator):
    """LDS, CDS and SRSS from one pass over per-distance cosine sums."""

    name = "spatial"
    perspective = "spatial"

    def __init__(self, far_dist: int | None = None, dmax: int | None = None, d_neg: int | None = None,
                 channel_mean: list[float] | None = None, channel_std: list[float] | None = None) -> None:
        if (channel_mean is None) != (channel_std is None):
            raise ValueError("spatial: give both channel_mean and channel_std, or neither")
        self.distances = {"far_dist": far_dist, "dmax": dmax, "d_neg": d_neg}
        self.stats = None if channel_mean is None else (np.asarray(channel_mean, np.float64),
                                                        np.asarray(channel_std, np.float64))

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(m) for m in ("lds", "cds", "srss"))

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {k: True for k in self.keys}

    def params(self, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
        used = self.distances if shape is None else asdict(resolve_distances(*shape[1:], **self.distances))
        return {**used, "standardisation": "accumulated" if self.stats is None else "given"}

    def summarise(self, batch: Batch) -> State:
        state: State = {"shape": batch.shape, "channels": channel_moments(batch.latent)}
        if self.stats is None:
            return {**state, "latents": [batch.latent], "masks": [batch.fg_mask]}
        mean, std = self.stats
        if mean.shape != (batch.shape[0],) or std.shape != mean.shape:
            raise ValueError(f"spatial: channel_mean/channel_std must have {batch.shape[0]} entries (one per "
                             f"channel), got {mean.shape[0]} and {std.shape[0]}")
        std = np.where(std > 0, std, 1.0)
        return {**state, **self._cosine_sums(batch.latent, batch.fg_mask, mean, std)}

    def _cosine_sums(self, latent: np.ndarray, mask: np.ndarray | None, mean: np.ndarray,
                     std: np.ndarray) -> State:
        """Per-distance cosine sums/counts [H+W−1] and SRSS sums of latent [B,C,H,W] standardised by mean, std [C]."""
        _, _, h, w = latent.shape
        dist = grid_distances(h, w)
        d_neg = resolve_distances(h, w, **self.distances).d_neg
        dist_sum, srss_sum, srss_count = np.zeros(h + w - 1), 0.0, 0.0
        for start in range(0, len(latent), CHUNK_IMAGES):
            part = (latent[start:start + CHUNK_IMAGES] - mean[:, None, None]) / std[:, None, None]
            cos = token_cosines(part)  # (b, HW, HW)
            dist_sum += np.bincount(dist.ravel(), weights=cos.sum(axis=0).ravel(), minlength=h + w - 1)
            if mask is not None:
                scores = srss_anchor_scores(cos, mask[start:start + CHUNK_IMAGES].reshape(len(part), -1), dist, d_neg)
                srss_sum, srss_count = srss_sum + float(scores.sum()), srss_count + float(scores.size)
        dist_count = len(latent) * np.bincount(dist.ravel(), minlength=h + w - 1).astype(np.float64)
        return {"dist_sum": dist_sum, "dist_count": dist_count, "srss_sum": srss_sum, "srss_count": srss_count}

    def _finalize(self, state: State) -> dict[str, Value]:
        _, h, w = state["shape"]
        if "latents" in state:
            channels = state["channels"]
            for latent, mask in zip(state["latents"], state["masks"]):
                state = merge_values(state, self._cosine_sums(latent, mask, channels.mean, channels.std))
        used = resolve_distances(h, w, **self.distances)
        mean_cos = state["dist_sum"] / state["dist_count"]  # (H+W−1,), index = distance
        d = np.arange(1, used.dmax + 1)
        centred = d - d.mean()
        slope = centred @ mean_cos[d] / (centred @ centred)  # least-squares slope of mean cosine on distance
        far = np.arange(used.far_dist, h + w - 1)
        lds = mean_cos[1] - state["dist_sum"][far].sum() / state["dist_count"][far].sum()
        srss = state["srss_sum"] / state["srss_count"] if state["srss_count"] > 0 else float("nan")
        return {self.key("lds"): float(lds), self.key("cds"): float(-slope), self.key("srss"): float(srss)}
