"""SEC@ρ, the spectral energy share above a Manhattan frequency (METRICS.md §4): lower is smoother.

`SEC_ρ = Σ_{u+v > ρ(H+W−2)} E_uv / Σ E_uv` with `E_uv = (1/(N C)) Σ_n ‖DCT2(z_n)[:, u, v]‖²` on per-channel
standardised latents. The orthonormal DCT is linear and maps a constant map to its (0,0) coefficient, so
standardising only rescales channel c by 1/s_c and shifts coefficient (c,0,0) by −m_c·sqrt(HW): the state keeps
the per-coefficient moments of the raw DCT and the per-channel moments, and finalize applies the correction exactly.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from raysweep.metrics.base import Accumulator, Batch, Moments, State, Value


@lru_cache(maxsize=16)
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix [n, n]: row k is sqrt((2 − δ_k0)/n)·cos(π(2i+1)k/(2n)); DCT(x) = M @ x."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    m[0] /= np.sqrt(2.0)
    m.setflags(write=False)
    return m


def dct2(z: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DCT-II over the last two axes of z [..., H, W] (float64)."""
    h, w = z.shape[-2:]
    return dct_matrix(h) @ np.asarray(z, np.float64) @ dct_matrix(w).T


@lru_cache(maxsize=16)
def dct2_matrix_float32(h: int, w: int) -> np.ndarray:
    """(M_h ⊗ M_w)ᵀ in float32, [HW, HW]: vec(M_h Z M_wᵀ) = (M_h ⊗ M_w) vec(Z) for C-order vec."""
    m = np.kron(dct_matrix(h), dct_matrix(w)).T.astype(np.float32)
    m.setflags(write=False)
    return m


def dct2_float32(latent: np.ndarray) -> np.ndarray:
    """`dct2` of latent [B,C,H,W] as one float32 [B·C, HW] @ [HW, HW] GEMM (the streaming path; at 16x16 this
    beats two skinny K = 16 GEMMs and their transposes): [B,C,H,W]."""
    b, c, h, w = latent.shape
    return (np.asarray(latent, np.float32).reshape(b * c, h * w) @ dct2_matrix_float32(h, w)).reshape(b, c, h, w)


def manhattan_frequency(h: int, w: int) -> np.ndarray:
    """u + v for every DCT coefficient, [H, W]."""
    return np.add.outer(np.arange(h), np.arange(w))


class SpectralEnergy(Accumulator):
    """SEC at each ρ in `rhos` (strict `>` on the threshold ρ(H+W−2))."""

    name = "sec"
    perspective = "smoothness"

    def __init__(self, rhos: tuple[float, ...] | list[float] = (0.25, 0.5)) -> None:
        if not rhos or any(not 0.0 < r < 1.0 for r in rhos):
            raise ValueError(f"sec: rhos must be a non-empty list of values in (0, 1), got {list(rhos)}")
        self.rhos = tuple(float(r) for r in rhos)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(f"sec@{r:g}") for r in self.rhos)

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {k: False for k in self.keys}

    def params(self, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
        if shape is None:
            return {"rhos": list(self.rhos)}
        _, h, w = shape
        return {"rhos": list(self.rhos), "thresholds": [r * (h + w - 2) for r in self.rhos]}

    def summarise(self, batch: Batch) -> State:
        return {"shape": batch.shape, "channels": batch.channels,
                "coefficients": Moments.of(dct2_float32(batch.latent), axis=(0,))}

    def _finalize(self, state: State) -> dict[str, Value]:
        _, h, w = state["shape"]
        channels: Moments = state["channels"]
        coef: Moments = state["coefficients"]  # mean, m2: (C, H, W)
        shift = np.zeros_like(coef.mean)
        shift[:, 0, 0] = channels.mean * np.sqrt(h * w)
        # Σ_n (ẑ − shift)² = M2 + N (mean − shift)², then divide by s_c²; the 1/(N C) factor cancels in the ratio.
        energy = (coef.m2 + coef.count * np.square(coef.mean - shift)) / np.square(channels.std)[:, None, None]
        energy = energy.sum(axis=0)  # (H, W)
        total = energy.sum()
        freq = manhattan_frequency(h, w)
        return {key: float(energy[freq > r * (h + w - 2)].sum() / total) if total > 0 else float("nan")
                for key, r in zip(self.keys, self.rhos)}
