"""Trajectory geometry (METRICS.md §9) against hand-computed paths."""
from __future__ import annotations

import math

import pytest
import torch

from raysweep.diffusion.trajectory import efficiency, length_ratios, straightness


def test_straight_constant_speed_path() -> None:
    g = torch.Generator().manual_seed(0)
    x0, d = torch.randn(3, 2, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    traj = torch.stack([x0 + (i / 5) * d for i in range(6)])  # (6, B, 2, 4)
    assert straightness(traj) == pytest.approx(1.0, abs=1e-6)
    assert efficiency(traj) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(length_ratios(traj), torch.ones(5))


def test_straight_path_with_uneven_pace() -> None:
    d = torch.tensor([[3.0, 4.0]])  # one sample, ‖d‖ = 5
    fractions = [0.0, 0.1, 0.5, 1.0]
    traj = torch.stack([f * d for f in fractions])
    assert straightness(traj) == pytest.approx(1.0)
    assert efficiency(traj) == pytest.approx(1.0)
    torch.testing.assert_close(length_ratios(traj), torch.tensor([0.3, 1.2, 1.5]))  # 3 · (0.1, 0.4, 0.5)


def test_zig_zag() -> None:
    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [3.0, 1.0]])[:, None]  # (4, 1, 2)
    assert straightness(pts) == pytest.approx(0.0, abs=1e-12)  # consecutive segments are orthogonal
    assert efficiency(pts) == pytest.approx(math.sqrt(10) / (3 * math.sqrt(2)))
    torch.testing.assert_close(length_ratios(pts), torch.full((3,), 3 * math.sqrt(2) / math.sqrt(10)))
    back = torch.tensor([[0.0], [1.0], [0.5]])[:, None]  # goes forward, turns back
    assert straightness(back) == pytest.approx(-1.0)
    assert efficiency(back) == pytest.approx(0.5 / 1.5)


def test_per_sample_then_average() -> None:
    straight = torch.stack([torch.tensor([[i * 1.0, 0.0]]) for i in range(4)])  # (4, 1, 2)
    zig = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [3.0, 1.0]])[:, None]
    both = torch.cat([straight, 100 * zig], dim=1)  # scale must not matter
    assert straightness(both) == pytest.approx(0.5)
    assert efficiency(both) == pytest.approx((1 + math.sqrt(10) / (3 * math.sqrt(2))) / 2)


def test_too_short_trajectories_rejected() -> None:
    with pytest.raises(ValueError, match="straightness"):
        straightness(torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="M >= 1"):
        efficiency(torch.zeros(1, 1, 3))
