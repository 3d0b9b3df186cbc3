"""The flow of Gaussian data, in closed form: what an exact sampler would produce, so the study's sampler can be
checked against it.

For data x1 ~ N(0, λ) per coordinate (a direction of the standardised latent's covariance with eigenvalue λ) and
the linear path x_t = t·x1 + (1 − t)·x0, x0 ~ N(0, 1), the optimal velocity is linear in x:
    v*(x, t) = E[x1 − x0 | x_t = x] = a(t)·x,  a(t) = (t·λ − (1 − t)) / (t²·λ + (1 − t)²).
The exact ODE maps x0 to √λ·x0. A one-step method maps x_i to g_i·x_i, so after n steps the sampled spread is
Π g_i against the true √λ: the ratio is the sampler's shrinkage of that direction, whatever the network learned.
"""
from __future__ import annotations

import numpy as np
import torch

from raysweep.diffusion.sampler import SamplerMethod


def velocity_gain(lam: np.ndarray | float, t: np.ndarray | float) -> np.ndarray:
    """a(t) of the optimal velocity for N(0, λ) data; λ > 0, broadcast with t."""
    lam, t = np.asarray(lam, dtype=np.float64), np.asarray(t, dtype=np.float64)
    return (t * lam - (1 - t)) / (t * t * lam + (1 - t) ** 2)


def sampler_spread(lam: np.ndarray | float, steps: int, method: SamplerMethod = "euler") -> np.ndarray:
    """Sampled std / true std of each direction of variance λ after `steps` uniform steps of `method` driven by the
    optimal velocity: 1 is exact, < 1 shrinks. λ (K,) -> (K,)."""
    lam = np.asarray(lam, dtype=np.float64)
    if np.any(lam <= 0):
        raise ValueError("sampler_spread: variances must be > 0")
    grid = np.linspace(0.0, 1.0, steps + 1)
    gain = np.ones_like(lam)
    for t0, t1 in zip(grid[:-1], grid[1:]):
        h, a0 = t1 - t0, velocity_gain(lam, t0)
        gain *= 1 + h * a0 if method == "euler" else 1 + h / 2 * (a0 + velocity_gain(lam, t1) * (1 + h * a0))
    return gain / np.sqrt(lam)


class GaussianVelocity(torch.nn.Module):
    """The optimal velocity field for data N(0, diag(λ)) over (C, H, W): a velocity model with the interface the
    samplers take (labels ignored), for checking them against `sampler_spread`."""

    def __init__(self, variance: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("variance", variance.double())  # (C, H, W)

    null_class = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lam, tt = self.get_buffer("variance")[None], t.double().reshape(-1, 1, 1, 1)  # (1, C, H, W), (B, 1, 1, 1)
        gain = (tt * lam - (1 - tt)) / (tt * tt * lam + (1 - tt) ** 2)  # (B, C, H, W)
        return (gain * x.double()).to(x.dtype)
