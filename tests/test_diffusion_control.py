"""The no-diffusion control's perturbations against closed forms: the per-direction shrinkage is the Euler sampler's
on Gaussian data (checked against the tensor sampler on the exact field, rotated), the perturbed covariance is
V diag(s²λ) Vᵀ exactly, many steps are the identity, and noise adds σ²I."""
import numpy as np
import pytest
import torch

from raysweep.diffusion.control import Eigenbasis, Perturbation, add_noise, shrink, shrinkage_factors
from raysweep.diffusion.gaussian import GaussianVelocity, sampler_spread
from raysweep.diffusion.sampler import ode_sample

LAM = np.array([4.0, 1.0, 0.1, 1e-2, 1e-3])


def _gaussian(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n samples of N(m, V diag(LAM) Vᵀ) with a random rotation V; -> (z (n, 5), V, m)."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    mean = rng.standard_normal(5)
    return mean + (rng.standard_normal((n, 5)) * np.sqrt(LAM)) @ rotation.T, rotation, mean


def test_factors_on_a_known_covariance_are_the_samplers() -> None:
    z, rotation, _ = _gaussian(400_000)
    basis = Eigenbasis.of(z)
    np.testing.assert_allclose(basis.variances, LAM, rtol=0.01)
    np.testing.assert_allclose(np.abs(basis.directions.T @ rotation), np.eye(5), atol=0.02)
    np.testing.assert_allclose(shrinkage_factors(basis, 20), sampler_spread(LAM, 20), rtol=0.01)
    assert shrinkage_factors(basis, 20)[-1] == pytest.approx(0.49, abs=0.01)  # the quoted 1e-3 -> 0.49


def test_shrunk_latents_have_the_tensor_samplers_covariance() -> None:
    """Independent of the closed form: Euler on the exact field in the eigenbasis, rotated back, has the spread of
    the shrunk data in every direction."""
    z, rotation, _ = _gaussian(200_000, seed=1)
    noise = torch.randn(200_000, 5, 1, 1, generator=torch.Generator().manual_seed(2))
    sampled = ode_sample(GaussianVelocity(torch.tensor(LAM).reshape(5, 1, 1)), noise,
                         torch.zeros(200_000, dtype=torch.long), 20).x1.reshape(-1, 5).double().numpy()
    cov_sampler = rotation @ np.cov(sampled.T, bias=True) @ rotation.T
    cov_shrunk = np.cov(shrink(z, 20).T, bias=True)
    along = np.einsum("dk,de,ek->k", rotation, cov_shrunk, rotation)
    np.testing.assert_allclose(along, np.einsum("dk,de,ek->k", rotation, cov_sampler, rotation), rtol=0.02)


def test_perturbed_covariance_is_exactly_the_scaled_one_and_the_mean_is_kept() -> None:
    z, _, _ = _gaussian(3000, seed=3)
    basis = Eigenbasis.of(z)
    s = shrinkage_factors(basis, 20)
    out = shrink(z, 20)
    expected = basis.directions @ np.diag(s ** 2 * basis.variances) @ basis.directions.T
    np.testing.assert_allclose(np.cov(out.T, bias=True), expected, atol=1e-10)
    np.testing.assert_allclose(out.mean(axis=0), z.mean(axis=0), atol=1e-12)


def test_a_fitted_basis_shrinks_held_out_latents_to_the_samplers_covariance() -> None:
    """The script shrinks validation latents in the train latents' basis: held-out samples of the same Gaussian get
    the sampler's covariance V diag(s²λ) Vᵀ (to sampling error)."""
    train, rotation, mean = _gaussian(100_000, seed=9)
    held_out = mean + (np.random.default_rng(10).standard_normal((100_000, 5)) * np.sqrt(LAM)) @ rotation.T
    out = shrink(held_out, 20, basis=Eigenbasis.of(train))
    along = np.einsum("dk,de,ek->k", rotation, np.cov(out.T, bias=True), rotation)
    np.testing.assert_allclose(along, sampler_spread(LAM, 20) ** 2 * LAM, rtol=0.03)
    np.testing.assert_array_equal(shrink(train, 20, basis=Eigenbasis.of(train)), shrink(train, 20))


def test_many_steps_are_the_identity_and_20_shrink_each_direction_by_its_factor() -> None:
    z, rotation, mean = _gaussian(2000, seed=4)
    np.testing.assert_allclose(shrink(z, 100_000), z, atol=2e-4)
    along = (shrink(z, 20) - mean) @ rotation / ((z - mean) @ rotation)  # per sample, per true direction
    np.testing.assert_allclose(np.median(along, axis=0), sampler_spread(LAM, 20), atol=0.02)
    assert np.all(np.diff(sampler_spread(LAM[1:], 20)) < 0)  # below unit variance: lower variance, more shrinkage


def test_rank_deficient_latents_stay_in_their_affine_span() -> None:
    """N < D and a dead coordinate: the null space is dropped, nothing is NaN, the data stays on its plane."""
    rng = np.random.default_rng(5)
    plane = rng.standard_normal((2, 6))
    z = (rng.standard_normal((4, 2)) * [1.0, 0.01]) @ plane + 3.0  # 4 points in a 2-D plane of R^6
    out = shrink(z.astype(np.float32), 20)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    residual = (out - z.mean(axis=0)) - ((out - z.mean(axis=0)) @ np.linalg.pinv(plane)) @ plane
    assert np.abs(residual).max() < 1e-5
    with pytest.raises(ValueError, match="no variance"):
        Eigenbasis.of(np.ones((3, 4)))


def test_noise_adds_sigma_squared_identity() -> None:
    z, _, _ = _gaussian(200_000, seed=6)
    for sigma in (0.1, 0.2):
        added = add_noise(z, sigma, seed=7) - z  # independent of z by construction: Σ + σ²I in total
        np.testing.assert_allclose(np.cov(added.T, bias=True), sigma ** 2 * np.eye(5), atol=0.02 * sigma ** 2)
        np.testing.assert_allclose(added.mean(axis=0), 0, atol=0.02 * sigma)
    np.testing.assert_array_equal(add_noise(z, 0.0), z)
    np.testing.assert_array_equal(add_noise(z, 0.1, seed=1), add_noise(z, 0.1, seed=1))


def test_perturbation_names_and_dispatch() -> None:
    z, _, _ = _gaussian(100, seed=8)
    assert [p.name for p in (Perturbation("none"), Perturbation("shrink", steps=20), Perturbation("noise", sigma=0.1),
                             Perturbation("shrink", steps=50, method="heun"))] == \
        ["none", "shrink@euler20", "noise@0.1", "shrink@heun50"]
    np.testing.assert_array_equal(Perturbation("shrink", steps=20).apply(z), shrink(z, 20))
    np.testing.assert_array_equal(Perturbation("noise", sigma=0.2).apply(z, seed=3), add_noise(z, 0.2, seed=3))
    np.testing.assert_array_equal(Perturbation("none").apply(z), z)
    for bad, match in ((dict(kind="shrink", steps=0), "steps must be >= 1"), (dict(kind="noise", sigma=-0.1), "sigma"),
                       (dict(kind="blur"), "one of none, shrink, noise")):
        with pytest.raises(ValueError, match=match):
            Perturbation(**bad)
