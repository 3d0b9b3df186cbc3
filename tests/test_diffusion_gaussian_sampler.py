"""The samplers against the closed-form flow of Gaussian data: the shrinkage the gFID-validity report quotes is the
sampler's own, computed two independent ways (the tensor sampler on the exact field; the scalar recurrence)."""
import numpy as np
import pytest
import torch

from raysweep.diffusion.gaussian import GaussianVelocity, sampler_spread, velocity_gain
from raysweep.diffusion.sampler import euler_sample, ode_sample

VARIANCES = torch.tensor([1e-3, 1e-2, 0.1, 1.0, 4.0]).reshape(5, 1, 1)


def _sampled_spread(steps: int, method: str, n: int = 20000) -> np.ndarray:
    noise = torch.randn(n, 5, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x1 = ode_sample(GaussianVelocity(VARIANCES), noise.float(), torch.zeros(n, dtype=torch.long), steps,
                    method=method).x1
    # the field is linear, so x1 = gain · x0 exactly: the ratio of samples is the gain, free of sampling noise
    gain = (x1.double() / noise).median(dim=0).values.flatten().numpy()
    return gain / np.sqrt(VARIANCES.flatten().double().numpy())


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 20, 100])
def test_sampler_matches_closed_form(method: str, steps: int) -> None:
    np.testing.assert_allclose(_sampled_spread(steps, method), sampler_spread(VARIANCES.flatten().numpy(), steps,
                                                                               method), rtol=2e-4)


def test_velocity_is_the_conditional_mean() -> None:
    """a(t)·x is E[x1 − x0 | x_t = x]: regress x1 − x0 on x_t over simulated pairs."""
    rng = np.random.default_rng(1)
    for lam, t in ((0.01, 0.3), (2.0, 0.8)):
        x0, x1 = rng.standard_normal(200_000), rng.standard_normal(200_000) * np.sqrt(lam)
        xt = t * x1 + (1 - t) * x0
        slope = np.dot(xt, x1 - x0) / np.dot(xt, xt)
        assert slope == pytest.approx(float(velocity_gain(lam, t)), rel=0.02)


def test_small_variance_directions_shrink_and_converge() -> None:
    """Euler shrinks low-variance directions most, less with more steps; Heun is second order (its error
    falls about 4x per halving of h) and converges to the exact spread."""
    lam = np.array([1e-3, 1e-2, 1.0])
    euler = {n: sampler_spread(lam, n) for n in (20, 50, 100)}
    assert np.all(np.diff(euler[20]) > 0)  # lower variance, more shrinkage
    assert np.all(euler[20] < euler[50]) and np.all(euler[50] < euler[100]) and np.all(euler[100] < 1)
    err = {n: abs(sampler_spread(lam, n, "heun") - 1) for n in (200, 400)}
    assert np.all(err[200] / err[400] > 3.8) and np.all(err[400] < 1e-3)


def test_euler_sample_is_the_euler_method() -> None:
    model, noise, y = GaussianVelocity(VARIANCES), torch.randn(8, 5, 1, 1), torch.zeros(8, dtype=torch.long)
    torch.testing.assert_close(euler_sample(model, noise, y, 7).x1, ode_sample(model, noise, y, 7, method="euler").x1)
    with pytest.raises(ValueError, match="euler, heun"):
        ode_sample(model, noise, y, 7, method="rk4")  # type: ignore[arg-type]
