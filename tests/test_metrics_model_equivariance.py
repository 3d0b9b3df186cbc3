"""Affine equivariance: exactly 1 for a per-position channel map, a hand-computed value otherwise, any split."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raysweep.metrics.model import Codec, Equivariance


def images(n: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3, size, size), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def conv1x1() -> torch.nn.Conv2d:
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 4, kernel_size=1).requires_grad_(False)


@pytest.mark.parametrize("stats,antialias", [(False, False), (True, False), (True, True)])
def test_a_1x1_conv_is_exactly_equivariant(stats, antialias):
    mean, std = (torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([2.0, 0.5, 1.0, 3.0])) if stats else (None, None)
    metric = Equivariance(rotations=[1, 2, 3], scales=[0.25, 0.5, 0.75], antialias=antialias)
    values = metric.finalize(metric.update(metric.init(), images(), Codec(conv1x1(), None, mean, std)))
    assert set(values) == set(metric.keys)
    for family in ("", "_rotate", "_scale"):
        assert values[f"latent/equivariance/consistency{family}"] == pytest.approx(1.0, abs=1e-6)
        assert values[f"latent/equivariance/error{family}"] < 1e-10


def test_a_fixed_positional_pattern_gives_the_hand_computed_rotation_consistency():
    pattern = torch.randn((1, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    x = images()
    metric = Equivariance(rotations=[1], scales=[])
    values = metric.finalize(metric.update(metric.init(), x, Codec(lambda im: im + pattern)))
    # Enc(rot x) = rot x + P, rot Enc(x) = rot x + rot P
    a = (torch.rot90(x, 1, (-2, -1)) + pattern).flatten(1).double()
    b = (torch.rot90(x, 1, (-2, -1)) + torch.rot90(pattern, 1, (-2, -1))).flatten(1).double()
    cos = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean()
    nmse = ((a - b).square().sum(1) / b.square().sum(1)).mean()
    assert values["latent/equivariance/consistency"] == pytest.approx(float(cos), rel=1e-9)
    assert values["latent/equivariance/error"] == pytest.approx(float(nmse), rel=1e-9)
    assert values["latent/equivariance/consistency"] < 0.9


def test_any_split_gives_the_same_result():
    torch.manual_seed(2)
    encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.Tanh()).requires_grad_(False)
    codec, x, metric = Codec(encoder), images(9), Equivariance()
    whole = metric.finalize(metric.update(metric.init(), x, codec))
    parts = [metric.update(metric.init(), x[rows], codec) for rows in (slice(0, 1), slice(1, 5), slice(5, 9))]
    split = metric.finalize(metric.merge(metric.merge(parts[2], parts[0]), parts[1]))
    for key in whole:
        np.testing.assert_allclose(split[key], whole[key], rtol=1e-6, err_msg=key)
    assert whole["latent/equivariance/consistency"] < 0.999


def test_bad_transforms_are_refused():
    with pytest.raises(ValueError, match="scales"):
        Equivariance(scales=[1.5])
    with pytest.raises(ValueError, match="rotations"):
        Equivariance(rotations=[4])


def eq_vae_scale_consistency(x: torch.Tensor, encoder: torch.nn.Module, s: float) -> float:
    """EQ-VAE's scale pair, written from its definition (zelaki/eqvae train_eqvae/ldm/models/autoencoder.py,
    commit c34589c4fb0d2a93da00ef403602a6b4ae223345): the latent is scaled with `interpolate(scale_factor=s,
    mode="bilinear", align_corners=False)` and compared with the encoding of the image scaled the same way; here the
    per-image cosine of the two, averaged, by explicit bilinear weights (half-pixel centres, edge clamped)."""
    def bilinear(t: torch.Tensor) -> torch.Tensor:
        n, m = t.shape[-2], int(t.shape[-2] * s)
        src = np.clip((np.arange(m) + 0.5) / s - 0.5, 0, n - 1)
        lo = np.minimum(np.floor(src).astype(int), n - 1)
        hi = np.minimum(lo + 1, n - 1)
        frac = src - lo
        weights = np.zeros((m, n))
        weights[np.arange(m), lo] += 1 - frac
        weights[np.arange(m), hi] += frac
        wt = torch.from_numpy(weights).to(t)
        return torch.einsum("ih,bchw,jw->bcij", wt, t, wt)

    with torch.no_grad():
        a, b = encoder(bilinear(x)).flatten(1).double(), bilinear(encoder(x)).flatten(1).double()
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())


def test_scale_consistency_matches_eq_vae_and_differs_from_antialias():
    torch.manual_seed(3)
    encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.Tanh()).requires_grad_(False)
    x, codec = images(8), Codec(encoder)
    plain = Equivariance(rotations=[], scales=[0.5])
    got = plain.finalize(plain.update(plain.init(), x, codec))["latent/equivariance/consistency"]
    assert got == pytest.approx(eq_vae_scale_consistency(x, encoder, 0.5), rel=1e-9)
    smooth = Equivariance(rotations=[], scales=[0.5], antialias=True)
    other = smooth.finalize(smooth.update(smooth.init(), x, codec))["latent/equivariance/consistency"]
    assert abs(other - got) > 1e-3


def test_a_scale_that_misses_the_latent_grid_says_so():
    encoder = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1).requires_grad_(False)
    metric = Equivariance(rotations=[], scales=[0.6])  # 16 -> 9 pixels -> 5 latents, but 8 latents -> 4
    with pytest.raises(ValueError, match="antialias: true"):
        metric.update(metric.init(), images(2), Codec(encoder))
