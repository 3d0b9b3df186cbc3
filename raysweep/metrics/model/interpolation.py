"""Manifold continuity — iFID (METRICS.md §5): decode interpolants between each latent and a near neighbour.

For each query latent (standardised, flattened): its k nearest reference latents by cosine, one of them drawn
with probability ∝ softmax(−MSE), the interpolant at α (slerp by default, linear optional), decoded. FID of the
decoded interpolants against real images is iFID (lower is better). In a study the queries are the validation
latents, the reference the training latents (the other validation latents when there are none), and the FID is
the study's scoring network's against the validation images (`TokenizerInputs.fid`).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from raysweep.metrics.base import Value
from raysweep.metrics.model.base import Codec, ModelOutput, TokenizerInputs, TokenizerMetric

SIMILARITY_BLOCK = 1024  # query rows per cosine block: bounds the [rows, M] similarity matrix
INTERPOLANTS_FILE = "ifid_interpolants.png"  # a grid of the first decoded interpolants, beside the marker
GRID_IMAGES = 64


def linear(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1−α)·a + α·b for rows a, b (N, ...)."""
    return (1 - alpha) * a + alpha * b


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation of the flattened rows a, b (N, ...), in float64; linear where a ∥ b (θ ≈ 0), which
    is also its limit. slerp(a, a, α) = a."""
    x, y = a.flatten(1).double(), b.flatten(1).double()
    cos = torch.nn.functional.cosine_similarity(x, y, dim=1).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)[:, None]  # (N, 1)
    sin = torch.sin(theta)
    parallel = sin < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, torch.full_like(sin, 1 - alpha), torch.sin((1 - alpha) * theta) / safe)
    wb = torch.where(parallel, torch.full_like(sin, alpha), torch.sin(alpha * theta) / safe)
    return (wa * x + wb * y).to(a.dtype).reshape(a.shape)


INTERPOLATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "slerp": slerp, "linear": linear}


def choose_partners(queries: torch.Tensor, reference: torch.Tensor, k: int, seed: int,
                    exclude_self: bool = False) -> np.ndarray:
    """Index [N] into reference (M, ...) of each query's partner (N, ...): among its k cosine-nearest reference
    rows, one drawn with probability ∝ softmax(−MSE). `exclude_self`: reference is the query set; row i never
    picks itself."""
    q, r = queries.flatten(1).double(), reference.flatten(1).double()
    available = len(r) - int(exclude_self)
    if available < k:
        raise ValueError(f"ifid: {available} reference latents for k={k} neighbours")
    qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    rn = r / r.norm(dim=1, keepdim=True).clamp_min(1e-12)
    rng = np.random.default_rng(seed)
    partners = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), SIMILARITY_BLOCK):
        rows = torch.arange(start, min(start + SIMILARITY_BLOCK, len(q)))
        sims = qn[rows] @ rn.T  # (rows, M)
        if exclude_self:
            sims[torch.arange(len(rows)), rows] = -torch.inf
        top = sims.topk(k, dim=1).indices  # (rows, k)
        mse = (r[top] - q[rows, None]).square().mean(dim=2)  # (rows, k)
        prob = torch.softmax(-mse, dim=1).cpu().numpy()
        draws = rng.random(len(rows))[:, None]
        pick = np.minimum((np.cumsum(prob, axis=1) < draws).sum(axis=1), k - 1)  # inverse-CDF sampling
        partners[rows.numpy()] = top.cpu().numpy()[np.arange(len(rows)), pick]
    return partners


class InterpolationFID(TokenizerMetric):
    """iFID: `interpolants` gives the decoded images, `result` names the FID computed on them."""

    name = "ifid"
    perspective = "continuity"

    def __init__(self, mode: str = "slerp", alpha: float = 0.5, k: int = 10, seed: int = 0,
                 batch_size: int = 64) -> None:
        if mode not in INTERPOLATIONS:
            raise ValueError(f"ifid: unknown mode {mode!r}; allowed: {', '.join(sorted(INTERPOLATIONS))}")
        if not 0 <= alpha <= 1 or k < 1 or batch_size < 1:
            raise ValueError(f"ifid: need 0 <= alpha <= 1, k >= 1, batch_size >= 1; got alpha={alpha}, k={k}, "
                             f"batch_size={batch_size}")
        self.mode, self.alpha, self.k, self.seed, self.batch_size = mode, alpha, k, seed, batch_size

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key("ifid"),)

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {self.key("ifid"): False}

    @torch.no_grad()
    def interpolants(self, queries: torch.Tensor, reference: torch.Tensor, codec: Codec,
                     exclude_self: bool = False) -> torch.Tensor:
        """Standardised latents queries (N, C, h, w), reference (M, C, h, w) -> decoded interpolants
        (N, 3, H, W) in the decoder's range, on the CPU; decoding runs on the latents' device in batches."""
        partners = torch.from_numpy(choose_partners(queries, reference, self.k, self.seed, exclude_self))
        mix = INTERPOLATIONS[self.mode](queries, reference[partners.to(reference.device)], self.alpha)
        return torch.cat([codec.decode_standardised(mix[i:i + self.batch_size]).cpu()
                          for i in range(0, len(mix), self.batch_size)])

    def result(self, fid: float) -> dict[str, Value]:
        return {self.key("ifid"): float(fid)}

    def run(self, data: TokenizerInputs) -> ModelOutput:
        queries = data.latents("val")
        if queries is None:
            raise ValueError("ifid: the tokenizer has no validation latents")
        reference = data.latents("train")
        decoded = self.interpolants(queries, queries if reference is None else reference, data.codec,
                                    exclude_self=reference is None)
        return ModelOutput(self.result(data.fid(decoded)), grids={INTERPOLANTS_FILE: decoded[:GRID_IMAGES]})
