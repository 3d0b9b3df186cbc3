"""Euler ODE sampling from noise (t = 0) to data (t = 1) with classifier-free guidance on the whole latent."""
from __future__ import annotations

from dataclasses import dataclass

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


@torch.no_grad()
def euler_sample(model: VelocityField, noise: torch.Tensor, y: torch.Tensor, steps: int = 50,
                 cfg_scale: float = 1.0, null_class: int | None = None,
                 guidance_interval: tuple[float, float] | None = None,
                 record_trajectory: bool = False) -> SampleResult:
    """Integrate dx/dt = v(x, t, y) from x0 = noise at t = 0 to t = 1 on a uniform grid of `steps` steps:
    `x_{i+1} = x_i + (t_{i+1} − t_i)·v(x_i, t_i)`. noise (B, C, H, W), y (B,)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    grid = torch.linspace(0.0, 1.0, steps + 1, device=noise.device)  # (steps+1,)
    x = noise.float()
    states = [x] if record_trajectory else []
    for i in range(steps):
        t = grid[i].expand(x.shape[0])  # (B,)
        v = cfg_velocity(model, x, t, y, cfg_scale, null_class, guidance_interval).float()  # (B, C, H, W)
        x = x + (grid[i + 1] - grid[i]) * v  # (B, C, H, W)
        if record_trajectory:
            states.append(x)
    return SampleResult(x1=x, trajectory=torch.stack(states) if record_trajectory else None)
