"""Transport: the path convention (t = 1 is data), timestep samplers' moments, losses in closed form."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from raysweep.diffusion.transport import (
    COS_EPS,
    get_loss,
    get_timestep_sampler,
    interpolate,
    training_loss,
    velocity_target,
)


class PointOracle(nn.Module):
    """Exact E[v | x_t] when all data is the single point d: v = (d − x_t)/(1 − t)."""

    def __init__(self, d: torch.Tensor) -> None:
        super().__init__()
        self.d = d

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.d - x) / (1 - t).reshape(-1, 1, 1, 1)

    def drop_labels(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return y


def test_path_endpoints_and_derivative() -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    x1 = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    assert torch.equal(interpolate(x0, x1, torch.zeros(3, dtype=torch.float64)), x0)
    assert torch.equal(interpolate(x0, x1, torch.ones(3, dtype=torch.float64)), x1)
    t, h = torch.tensor([0.1, 0.5, 0.8], dtype=torch.float64), 1e-6
    finite_diff = (interpolate(x0, x1, t + h) - interpolate(x0, x1, t)) / h
    torch.testing.assert_close(finite_diff, velocity_target(x0, x1))


def test_logit_normal_moments() -> None:
    mu, sigma, n = 0.3, 0.8, 200_000
    t = get_timestep_sampler("logit_normal", mu=mu, sigma=sigma)(n, torch.Generator().manual_seed(0)).double()
    logit = torch.log(t / (1 - t))
    assert abs(logit.mean().item() - mu) < 5 * sigma / math.sqrt(n)
    assert abs(logit.var().item() - sigma**2) < 5 * sigma**2 * math.sqrt(2 / n)


def test_uniform_moments() -> None:
    n = 200_000
    t = get_timestep_sampler("uniform")(n, torch.Generator().manual_seed(0)).double()
    assert t.min() >= 0 and t.max() < 1
    assert abs(t.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(t.var().item() - 1 / 12) < 0.002


def test_registries_name_allowed_values() -> None:
    with pytest.raises(ValueError, match="logit_normal"):
        get_timestep_sampler("cosine")
    with pytest.raises(ValueError, match=r"mse\+cos"):
        get_loss("huber")


def test_losses_closed_forms() -> None:
    target = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    mse_value, _ = get_loss("mse")(2 * target, target)
    torch.testing.assert_close(mse_value, target.square().mean())
    value, parts = get_loss("mse+cos")(2 * target, target)  # same direction: cos term 0
    torch.testing.assert_close(parts["cos"], torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(value, target.square().mean(), atol=1e-6, rtol=1e-6)
    _, parts = get_loss("mse+cos")(-target, target)  # opposite: cos term 2
    torch.testing.assert_close(parts["cos"], torch.tensor(2.0))


def test_cosine_term_is_over_channels_per_position() -> None:
    target = torch.zeros(1, 2, 2, 2)
    target[:, 0] = 1.0  # every position points along channel 0
    pred = target.clone()
    pred[:, :, 0, :] = torch.tensor([0.0, 3.0])[:, None]  # top row orthogonal (cos 0), bottom row aligned
    _, parts = get_loss("mse+cos")(pred, target)
    torch.testing.assert_close(parts["cos"], torch.tensor(0.5))


def test_mse_cos_gradient_is_bounded_at_zero_prediction() -> None:
    """The zero-initialised model predicts exactly 0; the loss gradient there has a closed form."""
    target = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pred = torch.zeros_like(target, requires_grad=True)
    get_loss("mse+cos")(pred, target)[0].backward()
    positions = 2 * 4 * 4
    unit = target / target.norm(dim=1, keepdim=True)
    expected = -2 * target / target.numel() - unit / (COS_EPS * positions)
    torch.testing.assert_close(pred.grad, expected)


def test_training_loss_uses_data_at_t_equal_one() -> None:
    d = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    x1 = d.expand(64, -1, -1, -1)
    loss, logs = training_loss(PointOracle(d), x1, torch.zeros(64, dtype=torch.long), get_timestep_sampler("uniform"),
                               get_loss("mse"), torch.Generator().manual_seed(1))
    assert loss.item() < 1e-6  # the exact conditional velocity has zero loss on a one-point dataset
    assert float(logs["loss"]) == float(logs["mse"]) == loss.item()


def test_training_loss_is_seeded() -> None:
    d = torch.randn(1, 2, 4, 4)
    x1 = torch.randn(8, 2, 4, 4)
    run = lambda: training_loss(PointOracle(d), x1, torch.zeros(8, dtype=torch.long),  # noqa: E731
                                get_timestep_sampler("logit_normal"), get_loss("mse+cos"),
                                torch.Generator().manual_seed(5))[0]
    assert torch.equal(run(), run())
