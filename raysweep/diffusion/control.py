"""The no-diffusion control: a tokenizer's own validation latents, distorted the way the sampler alone would distort
them, so that what a decoder does with sampler-shaped latents can be told from what diffusion learned (issue 24).

It lives beside `gaussian.py` because it is that module's closed form applied to data. For Gaussian data
N(m, Σ = V diag(λ) Vᵀ) the optimal velocity is v*(x, t) = m + V diag(a(t)) Vᵀ (x − t·m), so the deviation from
the mean path d_i = x_i − t_i·m obeys d_{i+1} = (I + h·V diag(a(t_i)) Vᵀ) d_i: each eigendirection's spread is
scaled by `sampler_spread(λ, steps)` and the mean is exact. Rescaling each centred latent's coordinates along
V by that factor gives the data exactly the covariance the sampler would produce: V diag(s²·λ) Vᵀ.

Latents here are (N, D) rows in the standardised space the diffusion model sees (per-channel mean and std of the
tokenizer's train latents), flattened."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from raysweep.diffusion.gaussian import sampler_spread
from raysweep.diffusion.sampler import SamplerMethod

RANK_TOLERANCE = 1e-12  # eigenvalues below this share of the largest are the null space: nothing to shrink there


@dataclass(frozen=True)
class Eigenbasis:
    """The population covariance of a set of latents as its positive-variance eigendirections."""

    mean: np.ndarray  # (D,)
    variances: np.ndarray  # (K,) descending, > 0
    directions: np.ndarray  # (D, K) orthonormal columns

    @classmethod
    def of(cls, z: np.ndarray) -> Eigenbasis:
        """z (N, D), float64 internally; directions with variance <= RANK_TOLERANCE · max are dropped (N < D, or
        dead channels), so the sampler factor is only asked of variances it is defined for."""
        x = np.asarray(z, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"Eigenbasis: latents must be (N >= 2, D), got shape {x.shape}")
        mean = x.mean(axis=0)  # (D,)
        centred = x - mean
        lam, vec = np.linalg.eigh(centred.T @ centred / len(x))  # ascending
        keep = lam > RANK_TOLERANCE * max(float(lam[-1]), 0.0)
        if not keep.any():
            raise ValueError("Eigenbasis: the latents have no variance")
        return cls(mean, lam[keep][::-1].copy(), vec[:, keep][:, ::-1].copy())

    def coordinates(self, z: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, K): the centred latents along each direction."""
        return (np.asarray(z, dtype=np.float64) - self.mean) @ self.directions


def shrinkage_factors(basis: Eigenbasis, steps: int, method: SamplerMethod = "euler") -> np.ndarray:
    """(K,) sampled std / true std of each direction after `steps` uniform steps of `method`."""
    return sampler_spread(basis.variances, steps, method)


def shrink(z: np.ndarray, steps: int, method: SamplerMethod = "euler", basis: Eigenbasis | None = None
           ) -> np.ndarray:
    """z (N, D) with each covariance direction scaled by the sampler's factor about the mean; the null space kept.
    `basis`: the distribution the sampler was fitted to (the train latents'; default z's own). -> (N, D), z's dtype."""
    basis = basis or Eigenbasis.of(z)
    coords = basis.coordinates(z)  # (N, K)
    moved = (coords * (shrinkage_factors(basis, steps, method) - 1)) @ basis.directions.T  # (N, D)
    return (np.asarray(z, dtype=np.float64) + moved).astype(z.dtype)


def add_noise(z: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """z (N, D) + isotropic N(0, σ²) noise in the standardised space (seeded: every tokenizer gets the same draws).
    -> (N, D) in z's dtype."""
    if sigma < 0:
        raise ValueError(f"add_noise: sigma must be >= 0, got {sigma}")
    noise = np.random.default_rng(seed).standard_normal(z.shape)
    return (np.asarray(z, dtype=np.float64) + sigma * noise).astype(z.dtype)


PerturbationKind = Literal["none", "shrink", "noise"]


@dataclass(frozen=True)
class Perturbation:
    """One perturbation of the control: none (the reconstruction), the sampler's shrinkage at `steps`, or noise."""

    kind: PerturbationKind
    steps: int = 0  # shrink
    sigma: float = 0.0  # noise
    method: SamplerMethod = "euler"

    def __post_init__(self) -> None:
        if self.kind not in ("none", "shrink", "noise"):
            raise ValueError(f"perturbation kind must be one of none, shrink, noise, got {self.kind!r}")
        if self.kind == "shrink" and self.steps < 1:
            raise ValueError(f"shrink: steps must be >= 1, got {self.steps}")
        if self.kind == "noise" and not self.sigma >= 0:
            raise ValueError(f"noise: sigma must be >= 0, got {self.sigma}")

    @property
    def name(self) -> str:
        """The CSV's `perturbation` value: `none`, `shrink@euler20`, `noise@0.1`."""
        if self.kind == "shrink":
            return f"shrink@{self.method}{self.steps}"
        return f"noise@{self.sigma:g}" if self.kind == "noise" else "none"

    def apply(self, z: np.ndarray, seed: int = 0, basis: Eigenbasis | None = None) -> np.ndarray:
        """(N, D) -> (N, D); `basis` as for `shrink`."""
        if self.kind == "shrink":
            return shrink(z, self.steps, self.method, basis)
        return add_noise(z, self.sigma, seed) if self.kind == "noise" else z.copy()
