"""Spatial structure of latent token maps (METRICS.md §3, iREPA definitions): LDS, CDS, SRSS, higher is better.

Tokens are the H·W positions of a per-channel standardised latent, L2-normalised over channels; similarity is
cosine, distance is Manhattan on the grid. The state holds per-distance sums and counts of token cosines, the sum
and count of per-image SRSS means and the sum and count of SRSS anchor scores, all exact under merge.

SRSS averages per image, then over images, by default (`srss_average="image"`), as iREPA's `metric_srss` does
(End2End-Diffusion/iREPA metrics/spatial_metrics.py, commit 99ad4ac234efe8de52ce157120f72856e836d09f: one score
per image, the mean over its valid anchors, then the mean over images), so large objects do not outweigh small
ones; `"anchor"` pools every anchor of every image instead.

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

from raysweep.metrics.base import Accumulator, Batch, LatentStats, State, Value, merge_values

SRSS_AVERAGES = ("image", "anchor")
REFERENCE_GRID = 16  # the iREPA distances below are for a 16x16 latent grid
REFERENCE_DISTANCES = {"far_dist": 6, "dmax": 8, "d_neg": 6}
CHUNK_IMAGES = 256  # images per Gram block: bounds the [P, chunk·C] token copies


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


def unit_tokens(latent: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """latent [B,C,H,W] standardised by mean, std [C] and L2-normalised over channels: [B, C, P] float32
    (an all-zero token stays zero)."""
    b, c = latent.shape[:2]
    scale = (1.0 / std).astype(np.float32)[:, None]
    x = (latent.reshape(b, c, -1) - mean.astype(np.float32)[:, None]) * scale
    norms = np.sqrt(np.square(x).sum(axis=1, keepdims=True))  # (B, 1, P)
    return x / np.where(norms > 0, norms, 1.0)


def position_major(tokens: np.ndarray) -> np.ndarray:
    """tokens [B, C, P] -> [P, B·C]: row p holds every image's token at p, so one GEMM sums over images."""
    return np.ascontiguousarray(tokens.transpose(2, 0, 1)).reshape(tokens.shape[2], -1)


def neighbour_sums(tokens: np.ndarray, weight: np.ndarray, h: int, w: int) -> np.ndarray:
    """Σ over the 4-neighbours q of each position p of weight[q]·cos(p, q): tokens [B,C,P], weight [B,P] -> [B,P]."""
    u = tokens.reshape(len(tokens), -1, h, w)
    wt = weight.reshape(len(tokens), h, w)
    right = (u[..., :, :-1] * u[..., :, 1:]).sum(axis=1)  # (B, H, W-1): cos of (p, p + x̂)
    down = (u[..., :-1, :] * u[..., 1:, :]).sum(axis=1)  # (B, H-1, W)
    out = np.zeros((len(tokens), h, w), np.float64)
    out[:, :, :-1] += right * wt[:, :, 1:]
    out[:, :, 1:] += right * wt[:, :, :-1]
    out[:, :-1, :] += down * wt[:, 1:, :]
    out[:, 1:, :] += down * wt[:, :-1, :]
    return out.reshape(len(tokens), -1)


def srss_anchor_scores(tokens: np.ndarray, mask: np.ndarray, h: int, w: int,
                       d_neg: int) -> tuple[np.ndarray, np.ndarray]:
    """SRSS score [B,P] of every anchor and whether it is valid [B,P] bool (scores of invalid anchors are 0).

    tokens [B,C,P] unit, mask [B,P] bool. An anchor's score is its mean cosine to foreground tokens at distance 1
    minus its mean cosine to background tokens at distance >= d_neg; anchors lacking either are dropped (which
    also drops every image with < 2 foreground or no background tokens). The far sum of anchor p is
    u_p · Σ_q far[p,q] bg[q] u_q: one [P,P] @ [P, B·C] GEMM for the whole batch.
    """
    b, c, p = tokens.shape
    fg = mask.astype(np.float32)  # (B, P)
    bg = 1.0 - fg
    far = (grid_distances(h, w) >= d_neg).astype(np.float32)  # (P, P), symmetric
    pos_sum = neighbour_sums(tokens, fg, h, w)
    pos_cnt = neighbour_sums(np.ones((b, 1, p), np.float32), fg, h, w)
    pulled = far @ position_major(tokens * bg[:, None, :])  # (P, B·C): Σ_q far[p,q] bg[q] u_q
    neg_sum = np.einsum("bcp,pbc->bp", tokens, pulled.reshape(p, b, c), dtype=np.float64)
    neg_cnt = bg @ far
    valid = mask & (pos_cnt > 0) & (neg_cnt > 0)
    return np.where(valid, pos_sum / np.maximum(pos_cnt, 1) - neg_sum / np.maximum(neg_cnt, 1), 0.0), valid


class SpatialStructure(Accumulator):
    """LDS, CDS and SRSS from one pass over per-distance cosine sums."""

    name = "spatial"
    perspective = "spatial"

    def __init__(self, far_dist: int | None = None, dmax: int | None = None, d_neg: int | None = None,
                 channel_mean: list[float] | None = None, channel_std: list[float] | None = None,
                 srss_average: str = "image") -> None:
        if (channel_mean is None) != (channel_std is None):
            raise ValueError("spatial: give both channel_mean and channel_std, or neither")
        if srss_average not in SRSS_AVERAGES:
            raise ValueError(f"spatial: srss_average must be one of {', '.join(SRSS_AVERAGES)}, got '{srss_average}'")
        self.srss_average = srss_average
        self.distances = {"far_dist": far_dist, "dmax": dmax, "d_neg": d_neg}
        self.stats = None if channel_mean is None else (np.asarray(channel_mean, np.float64),
                                                        np.asarray(channel_std, np.float64))

    @classmethod
    def footer_params(cls, stats: LatentStats) -> dict[str, Any]:
        """The written set's channel statistics: with them the state streams instead of holding every latent."""
        return {"channel_mean": stats.channel_mean.tolist(), "channel_std": stats.channel_std.tolist()}

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(m) for m in ("lds", "cds", "srss"))

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {k: True for k in self.keys}

    def params(self, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
        used = self.distances if shape is None else asdict(resolve_distances(shape[1], shape[2], **self.distances))
        return {**used, "standardisation": "accumulated" if self.stats is None else "given",
                "srss_average": self.srss_average}

    def summarise(self, batch: Batch) -> State:
        state: State = {"shape": batch.shape}
        if self.stats is None:
            return {**state, "channels": batch.channels, "latents": [batch.latent], "masks": [batch.fg_mask]}
        mean, std = self.stats
        if mean.shape != (batch.shape[0],) or std.shape != mean.shape:
            raise ValueError(f"spatial: channel_mean/channel_std must have {batch.shape[0]} entries (one per "
                             f"channel), got {mean.shape[0]} and {std.shape[0]}")
        std = np.where(std > 0, std, 1.0)
        return {**state, **self._cosine_sums(batch.latent, batch.fg_mask, mean, std)}

    def _cosine_sums(self, latent: np.ndarray, mask: np.ndarray | None, mean: np.ndarray,
                     std: np.ndarray) -> State:
        """Per-distance cosine sums/counts [H+W−1] and SRSS sums of latent [B,C,H,W] standardised by mean, std [C].

        Σ_b cos_b(p, q) is the [P, P] Gram matrix of the position-major unit tokens: one GEMM per chunk of images,
        then binned by grid distance. Tokens are float32 (the same bits however the data are split); the Gram is
        float64 because LDS is a small difference of mean cosines that float32 sums would blur at ~1e-8."""
        _, _, h, w = latent.shape
        dist = grid_distances(h, w)
        d_neg = resolve_distances(h, w, **self.distances).d_neg
        dist_sum = np.zeros(h + w - 1)
        srss = dict.fromkeys(("srss_anchor_sum", "srss_anchor_count", "srss_image_sum", "srss_image_count"), 0.0)
        for start in range(0, len(latent), CHUNK_IMAGES):
            tokens = unit_tokens(latent[start:start + CHUNK_IMAGES], mean, std)  # (b, C, P)
            rows = position_major(tokens).astype(np.float64)
            gram = rows @ rows.T  # (P, P)
            dist_sum += np.bincount(dist.ravel(), weights=gram.ravel(), minlength=h + w - 1)
            if mask is not None:
                part = mask[start:start + CHUNK_IMAGES].reshape(len(tokens), -1)
                scores, valid = srss_anchor_scores(tokens, part, h, w, d_neg)
                per_image, anchors = scores.sum(axis=1), valid.sum(axis=1)  # (b,)
                has = anchors > 0
                srss["srss_anchor_sum"] += float(per_image.sum())
                srss["srss_anchor_count"] += float(anchors.sum())
                srss["srss_image_sum"] += float((per_image[has] / anchors[has]).sum())
                srss["srss_image_count"] += float(has.sum())
        dist_count = len(latent) * np.bincount(dist.ravel(), minlength=h + w - 1).astype(np.float64)
        return {"dist_sum": dist_sum, "dist_count": dist_count, **srss}

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
        total, count = state[f"srss_{self.srss_average}_sum"], state[f"srss_{self.srss_average}_count"]
        srss = total / count if count > 0 else float("nan")
        return {self.key("lds"): float(lds), self.key("cds"): float(-slope), self.key("srss"): float(srss)}
