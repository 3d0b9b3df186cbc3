"""SEC against single DCT modes (exact 0 / 1) and an independent scipy computation."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.fft import dctn, idctn

from raysweep.metrics import SpectralEnergy, dct2, dct_matrix, run_accumulator

C, H, W = 3, 8, 8  # H + W - 2 = 14: thresholds 3.5 (ρ = 0.25) and 7 (ρ = 0.5)
KEYS = ("latent/smoothness/sec@0.25", "latent/smoothness/sec@0.5")


def sec(latent: np.ndarray, batches: int = 1) -> tuple[float, float]:
    parts = np.array_split(latent.astype(np.float32), batches)
    out = run_accumulator(SpectralEnergy(), [SimpleNamespace(sample_id=np.arange(len(p)), label=np.zeros(len(p), int),
                                                             latent=p, fg_mask=None) for p in parts])
    return out[KEYS[0]], out[KEYS[1]]


def mode(u: int, v: int) -> np.ndarray:
    """The spatial map whose orthonormal DCT is a single 1 at (u, v), [H, W] (scipy's inverse DCT)."""
    delta = np.zeros((H, W))
    delta[u, v] = 1.0
    return idctn(delta, norm="ortho")


def single_mode_latents(u: int, v: int, seed: int = 0) -> np.ndarray:
    """Random amplitudes per image and channel times one DCT mode, plus per-channel constant offsets (which the
    standardisation removes: they live in the (0, 0) coefficient only)."""
    rng = np.random.default_rng(seed)
    amplitude = rng.normal(size=(40, C, 1, 1))
    offset = np.array([5.0, -3.0, 0.5])[None, :, None, None]
    return amplitude * mode(u, v) + offset


def test_dct_matches_scipy_orthonormal_dct2():
    z = np.random.default_rng(0).normal(size=(2, 3, 8, 6))
    np.testing.assert_allclose(dct2(z), dctn(z, type=2, norm="ortho", axes=(-2, -1)), atol=1e-12)
    np.testing.assert_allclose(dct_matrix(5) @ dct_matrix(5).T, np.eye(5), atol=1e-12)


@pytest.mark.parametrize(("u", "v", "expected"), [
    (1, 1, (0.0, 0.0)),  # u+v = 2: below both thresholds
    (0, 3, (0.0, 0.0)),  # 3 <= 3.5
    (2, 3, (1.0, 0.0)),  # 5: above 3.5, below 7
    (3, 4, (1.0, 0.0)),  # 7 is not > 7 (strict)
    (4, 4, (1.0, 1.0)),  # 8: above both
    (7, 7, (1.0, 1.0)),
])
def test_single_mode_energy_is_all_below_or_all_above(u, v, expected):
    assert sec(single_mode_latents(u, v)) == pytest.approx(expected, abs=1e-9)


def test_two_modes_split_energy_by_their_amplitudes():
    rng = np.random.default_rng(1)
    low, high = rng.normal(size=(60, C, 1, 1)), 0.5 * rng.normal(size=(60, C, 1, 1))
    latent = low * mode(0, 1) + high * mode(5, 6)
    std = np.sqrt(np.square(latent).mean(axis=(0, 2, 3)))[None, :, None, None]  # zero channel means
    e_low, e_high = np.square(low / std).sum(), np.square(high / std).sum()
    share = e_high / (e_low + e_high)
    assert sec(latent) == pytest.approx((share, share), rel=1e-6)


def test_sec_matches_an_independent_scipy_computation_under_batching():
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(50, C, H, W))
    smooth = np.cumsum(np.cumsum(noise, axis=2), axis=3) / 4  # mostly low frequency
    latent = (smooth + 0.3 * noise) * np.array([1.0, 3.0, 0.2])[None, :, None, None] + np.array([2.0, -1.0, 7.0])[
        None, :, None, None]
    latent = latent.astype(np.float32)
    x = latent.astype(np.float64)
    z = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)
    energy = np.square(dctn(z, norm="ortho", axes=(2, 3))).mean(axis=(0, 1))
    u, v = np.indices((H, W))
    expected = tuple(energy[u + v > r * (H + W - 2)].sum() / energy.sum() for r in (0.25, 0.5))
    assert sec(latent, batches=7) == pytest.approx(expected, rel=1e-6)
    assert 0.0 < expected[1] < expected[0] < 1.0


def test_rhos_outside_the_unit_interval_raise():
    with pytest.raises(ValueError, match="1.5"):
        SpectralEnergy(rhos=(0.25, 1.5))
