"""ODE sampling (Euler, Heun) from noise (t = 0) to data (t = 1) with classifier-free guidance on the whole latent."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from raysweep.diffusion.transport import VelocityField


@dataclass(frozen=True)
class SampleResult:
    x1: torch.Tensor  # (B, C, H, W), the sample at t = 1
    trajectory: torch.Tensor | None  # (steps+1, B, C, H, W) states on the time grid, x0 first; None unless asked


def _null_class(model: VelocityField, null_class: int | None) -> int:
    if null_class is not None:
        return null_class
    if not hasattr(model, "null_class"):
        raise ValueError(f"{type(model).__name__} has no null_class; pass null_class explicitly")
    return int(model.null_class)


def cfg_velocity(model: VelocityField, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, scale: float,
                 null_class: int | None = None, interval: tuple[float, float] | None = None) -> torch.Tensor:
    """Guided velocity `u + s·(c − u)` on every channel, c = v(x, t, y), u = v(x, t, null).

    One forward of the stacked batch [cond; uncond]. Samples whose t lies outside the closed `interval`
    (flow time, 1 = data) get the plain conditional velocity; scale 1 or no sample inside skips the
    unconditional pass. x (B, C, H, W), t (B,), y (B,) -> (B, C, H, W).
    """
    inside = torch.ones_like(t, dtype=torch.bool) if interval is None else (t >= interval[0]) & (t <= interval[1])
    if scale == 1.0 or not bool(inside.any()):
        return model(x, t, y)  # (B, C, H, W)
    null = torch.full_like(y, _null_class(model, null_class))  # (B,)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))  # (2B, C, H, W)
    cond, uncond = both.chunk(2)  # 2 × (B, C, H, W)
    guided = uncond + scale * (cond - uncond)  # (B, C, H, W), all channels
    return torch.where(inside.reshape(-1, *([1] * (x.dim() - 1))), guided, cond)


SamplerMethod = Literal["euler", "heun"]
SAMPLER_METHODS: tuple[SamplerMethod, ...] = ("euler", "heun")


@torch.no_grad()
def ode_sample(model: VelocityField, noise: torch.Tensor, y: torch.Tensor, steps: int = 50,
               cfg_scale: float = 1.0, null_class: int | None = None,
               guidance_interval: tuple[float, float] | None = None,
               record_trajectory: bool = False, method: SamplerMethod = "euler") -> SampleResult:
    """Integrate dx/dt = v(x, t, y) from x0 = noise at t = 0 to t = 1 on a uniform grid of `steps` steps.

    euler: `x_{i+1} = x_i + h·v(x_i, t_i)` (one evaluation a step). heun: the trapezoid corrector
    `x_{i+1} = x_i + h/2·(v(x_i, t_i) + v(x_i + h·v(x_i, t_i), t_{i+1}))` (two, second order): the sampler check
    re-samples with it to see whether a ranking is the first-order sampler's. noise (B, C, H, W), y (B,).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method not in SAMPLER_METHODS:
        raise ValueError(f"sampler method must be one of {', '.join(SAMPLER_METHODS)}, got {method!r}")
    grid = torch.linspace(0.0, 1.0, steps + 1, device=noise.device)  # (steps+1,)

    def velocity(x: torch.Tensor, i: int) -> torch.Tensor:
        t = grid[i].expand(x.shape[0])  # (B,)
        return cfg_velocity(model, x, t, y, cfg_scale, null_class, guidance_interval).float()  # (B, C, H, W)

    x = noise.float()
    states = [x] if record_trajectory else []
    for i in range(steps):
        h = grid[i + 1] - grid[i]
        v = velocity(x, i)  # (B, C, H, W)
        if method == "heun":
            v = (v + velocity(x + h * v, i + 1)) / 2
        x = x + h * v  # (B, C, H, W)
        if record_trajectory:
            states.append(x)
    return SampleResult(x1=x, trajectory=torch.stack(states) if record_trajectory else None)


def euler_sample(model: VelocityField, noise: torch.Tensor, y: torch.Tensor, steps: int = 50,
                 cfg_scale: float = 1.0, null_class: int | None = None,
                 guidance_interval: tuple[float, float] | None = None,
                 record_trajectory: bool = False) -> SampleResult:
    """`ode_sample` with the Euler method: the study's sampler."""
    return ode_sample(model, noise, y, steps, cfg_scale, null_class, guidance_interval, record_trajectory, "euler")
