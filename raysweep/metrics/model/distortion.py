"""Encoder distortion penalties of the Fisher-geometry view (METRICS.md §8), from Jacobian-vector products.

At each image x the encoder's Jacobian J is probed along unit directions u in pixel space: *tangent* ones
(normalised differences to the k nearest images of a fixed reference set, i.e. along the data manifold) and K
*random* orthonormal ones (fixed by the seed, shared by every image, so results do not depend on batching).
- dimensional compression: effective rank (Roy & Vetterli: exp of the entropy of the normalised singular values)
  of J·Ω for the random orthonormal Ω [d_pix, K], over min(K, d_latent) — 1 when J is a scaled isometry on the
  probed subspace; `dim_ratio` = d_latent / d_pixel is logged beside it;
- tangential distortion: variance over directions of log ‖J u‖ — 0 for a conformal map;
- curvature injection: ‖E(x+hu) − 2E(x) + E(x−hu)‖ / (h² ‖J u‖), h = step·sqrt(d_pix) (step = RMS change per
  pixel) — 0 for an affine encoder.
All on standardised latents; per-image values are summed, so the state is exact under any split. In a study,
tangents point into the first `reference_images` validation images.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.func import jvp

from raysweep.metrics.base import State, Value
from raysweep.metrics.model.base import Codec, ImageMetric, TokenizerInputs


def effective_rank(matrix: torch.Tensor) -> float:
    """exp(entropy of σ/Σσ) of the singular values σ of matrix [m, n]; 0 for a zero matrix."""
    sv = torch.linalg.svdvals(matrix.double())
    total = sv.sum()
    if total <= 0:
        return 0.0
    p = sv[sv > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))


def random_directions(shape: tuple[int, ...], count: int, seed: int) -> torch.Tensor:
    """`count` orthonormal directions (count, *shape) from a seeded Gaussian, float64 on the CPU."""
    d = int(np.prod(shape))
    if not 1 <= count <= d:
        raise ValueError(f"distortion: directions must lie in [1, {d}] (pixel dimension), got {count}")
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, count, generator=gen, dtype=torch.float64))  # (d, count)
    return q.T.reshape(count, *shape)


def neighbour_directions(images: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """Unit vectors from each image (B, ...) to its k nearest reference images (R, ...) in Euclidean distance,
    copies of the image itself (distance 0) excluded -> (B, k, ...)."""
    x, r = images.flatten(1).double(), reference.flatten(1).double().to(images.device)
    dist = torch.cdist(x, r, compute_mode="donot_use_mm_for_euclid_dist")  # (B, R); exact 0 for copies
    dist = torch.where(dist > 0, dist, torch.full_like(dist, float("inf")))
    if (dist.isfinite().sum(1) < k).any():
        raise ValueError(f"distortion: every image needs {k} reference images that differ from it; the reference "
                         f"set has {len(reference)} images")
    idx = dist.topk(k, dim=1, largest=False).indices  # (B, k)
    diff = r[idx] - x[:, None]  # (B, k, d)
    return (diff / diff.norm(dim=2, keepdim=True)).reshape(len(images), k, *images.shape[1:])


class EncoderDistortion(ImageMetric):
    """Dimensional compression, tangential distortion and curvature injection of the encoder."""

    name = "distortion"
    perspective = "fisher"

    def __init__(self, neighbours: int = 4, directions: int = 16, step: float = 0.05, seed: int = 0,
                 jvp_batch: int = 160, reference_images: int = 256) -> None:
        if neighbours < 2 or directions < 2 or step <= 0 or jvp_batch < 1 or reference_images <= neighbours:
            raise ValueError(f"distortion: need neighbours >= 2, directions >= 2, step > 0, jvp_batch >= 1, "
                             f"reference_images > neighbours; got neighbours={neighbours}, directions={directions}, "
                             f"step={step}, jvp_batch={jvp_batch}, reference_images={reference_images}")
        self.neighbours, self.directions, self.step, self.seed = neighbours, directions, step, seed
        self.jvp_batch = jvp_batch  # encoder inputs per JVP call: bounds memory, amortises per-call overhead
        self.reference_images = reference_images

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(m) for m in ("compression", "dim_ratio", "tangential_distortion",
                                           "tangential_distortion_random", "curvature", "curvature_random"))

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {self.key("compression"): True, self.key("tangential_distortion"): False,
                self.key("curvature"): False}

    def update_images(self, state: State, images: torch.Tensor, data: TokenizerInputs) -> State:
        return self.update(state, images, data.codec, data.images[:self.reference_images].to(images.device))

    def update(self, state: State, images: torch.Tensor, codec: Codec, reference: torch.Tensor) -> State:
        """images (B, 3, H, W) in [-1, 1]; reference (R, 3, H, W): the fixed set tangents point to."""
        if len(images) == 0:
            return state
        shape = tuple(images.shape[1:])
        omega = random_directions(shape, self.directions, self.seed).to(images)  # (K, 3, H, W)
        tangents = neighbour_directions(images, reference, self.neighbours).to(images)  # (B, k, 3, H, W)
        m = self.neighbours + self.directions  # directions per image
        group = max(1, self.jvp_batch // m)  # images per JVP call
        sums = np.zeros(5)
        for start in range(0, len(images), group):
            x = images[start:start + group]
            u = torch.cat([tangents[start:start + group], omega.expand(len(x), *omega.shape)], dim=1)  # (b, m, ...)
            part, d_latent = self._penalties(x[:, None].expand_as(u).flatten(0, 1), u.flatten(0, 1), codec)
            sums += part.reshape(len(x), 5).sum(axis=0)
        return self.merge(state, {"dims": (d_latent, int(np.prod(shape))), "count": float(len(images)), "sums": sums})

    def _penalties(self, x: torch.Tensor, u: torch.Tensor, codec: Codec) -> tuple[np.ndarray, int]:
        """x, u (b·m, 3, H, W): each image repeated m times with its k tangent then K random directions ->
        per image [erank ratio, var log‖Ju‖ (tangent, random), curvature (tangent, random)], flattened [b·5]."""
        k, m = self.neighbours, self.neighbours + self.directions
        h = self.step * float(np.sqrt(x[0].numel()))
        z, ju = jvp(codec.encode_standardised, (x.contiguous(),), (u,))[:2]  # E(x), J u: (b·m, C, h, w)
        with torch.no_grad():
            norms = ju.flatten(1).double().norm(dim=1).reshape(-1, m)  # (b, m)
            second = codec.encode_standardised(x + h * u) - 2 * z + codec.encode_standardised(x - h * u)
            curvature = second.flatten(1).double().norm(dim=1).reshape(-1, m) / (h * h * norms)
            log_norm = norms.log()
            d_latent = z[0].numel()
            sketches = ju.flatten(1).reshape(-1, m, d_latent)[:, k:]  # (b, K, d_latent): rows J ω
            erank = [effective_rank(s.T) / min(self.directions, d_latent) for s in sketches]
            out = torch.stack([torch.tensor(erank, dtype=torch.float64, device=norms.device),
                               log_norm[:, :k].var(dim=1, unbiased=False), log_norm[:, k:].var(dim=1, unbiased=False),
                               curvature[:, :k].mean(dim=1), curvature[:, k:].mean(dim=1)], dim=1)  # (b, 5)
        return out.cpu().numpy().ravel(), d_latent

    def _finalize(self, state: State) -> dict[str, Value]:
        erank, tangential, tangential_random, curvature, curvature_random = state["sums"] / state["count"]
        d_latent, d_pixel = state["dims"]
        return {self.key("compression"): float(erank), self.key("dim_ratio"): d_latent / d_pixel,
                self.key("tangential_distortion"): float(tangential),
                self.key("tangential_distortion_random"): float(tangential_random),
                self.key("curvature"): float(curvature), self.key("curvature_random"): float(curvature_random)}
