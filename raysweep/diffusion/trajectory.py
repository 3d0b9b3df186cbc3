"""Geometry of sampled ODE trajectories (METRICS.md §9): how straight and how evenly paced the Euler path is.
A trajectory is `(M+1, B, ...)`: M steps, B samples; each quantity is computed per sample, then averaged."""
from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-12


def _segments(traj: torch.Tensor) -> torch.Tensor:
    """Δ_i = x_{i+1} − x_i, flattened per sample. (M+1, B, ...) -> (M, B, d)."""
    if traj.dim() < 2 or traj.shape[0] < 2:
        raise ValueError(f"trajectory must be (M+1, B, ...) with M >= 1, got shape {tuple(traj.shape)}")
    return traj.diff(dim=0).flatten(2).double()


def _displacement(traj: torch.Tensor) -> torch.Tensor:
    """‖x_M − x_0‖ per sample, (B,)."""
    return (traj[-1] - traj[0]).flatten(1).double().norm(dim=1)


def straightness(traj: torch.Tensor) -> float:
    """(1/(M−1)) Σ_i cos(Δ_i, Δ_{i+1}); 1 for a path that never turns. Needs M >= 2."""
    delta = _segments(traj)  # (M, B, d)
    if delta.shape[0] < 2:
        raise ValueError("straightness needs at least 2 steps")
    cos = F.cosine_similarity(delta[:-1], delta[1:], dim=2, eps=_EPS)  # (M-1, B)
    return float(cos.mean(dim=0).mean())


def efficiency(traj: torch.Tensor) -> float:
    """‖x_M − x_0‖ / Σ_i ‖Δ_i‖; 1 for a straight path, < 1 for any detour."""
    path = _segments(traj).norm(dim=2).sum(dim=0)  # (B,)
    return float((_displacement(traj) / path.clamp_min(_EPS)).mean())


def length_ratios(traj: torch.Tensor) -> torch.Tensor:
    """Per-segment length ratio M‖Δ_i‖ / ‖x_M − x_0‖, averaged over samples -> (M,); all 1 on a straight path
    walked at constant speed."""
    lengths = _segments(traj).norm(dim=2)  # (M, B)
    return (lengths.shape[0] * lengths / _displacement(traj).clamp_min(_EPS)).mean(dim=1).float()  # (M,)
