"""Encoder distortion penalties: zero for an orthogonal linear encoder, positive for a non-linear one, the exact
rank ratio of a projection, any split, and JVPs through a real tokenizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raysweep.metrics.model import Codec, EncoderDistortion, neighbour_directions
from raysweep.tokenizers import build_tokenizer

SHAPE = (3, 4, 4)  # images; the linear encoders map them to latents of the same shape
D = 48


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def linear_encoder(matrix: torch.Tensor, nonlinear: bool = False):
    def encode(x: torch.Tensor) -> torch.Tensor:
        z = (x.flatten(1) @ matrix.T).reshape(len(x), *SHAPE)
        return torch.tanh(2 * z) if nonlinear else z
    return encode


def orthogonal(seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def run(encode, x: torch.Tensor, reference: torch.Tensor, **params) -> dict:
    metric = EncoderDistortion(**params)
    return metric.finalize(metric.update(metric.init(), x, Codec(encode), reference))


def test_an_orthogonal_linear_encoder_has_no_distortion():
    reference = images(12, 1)
    values = run(linear_encoder(3.0 * orthogonal()), reference[:4], reference, directions=D)
    assert values["latent/fisher/tangential_distortion"] == pytest.approx(0.0, abs=1e-20)
    assert values["latent/fisher/tangential_distortion_random"] == pytest.approx(0.0, abs=1e-20)
    assert values["latent/fisher/curvature"] == pytest.approx(0.0, abs=1e-9)
    assert values["latent/fisher/curvature_random"] == pytest.approx(0.0, abs=1e-9)
    assert values["latent/fisher/compression"] == pytest.approx(1.0, rel=1e-9)
    assert values["latent/fisher/dim_ratio"] == 1.0


def test_a_nonlinear_encoder_is_distorted():
    reference = images(12, 1)
    values = run(linear_encoder(orthogonal(), nonlinear=True), reference[:4], reference, directions=8)
    assert values["latent/fisher/tangential_distortion"] > 1e-3
    assert values["latent/fisher/curvature"] > 1e-2


def test_a_rank_r_projection_compresses_to_r_over_d():
    keep = torch.zeros(D, dtype=torch.float64)
    keep[:16] = 1.0  # the first latent channel survives: rank 16 of 48
    reference = images(8, 2)
    values = run(linear_encoder(torch.diag(keep) @ orthogonal(3)), reference[:2], reference, directions=D)
    assert values["latent/fisher/compression"] == pytest.approx(16 / 48, rel=1e-9)


def test_any_split_gives_the_same_result():
    reference = images(10, 4)
    metric, codec = EncoderDistortion(directions=6, neighbours=3), Codec(linear_encoder(orthogonal(), True))
    whole = metric.finalize(metric.update(metric.init(), reference[:7], codec, reference))
    one_per_call = EncoderDistortion(directions=6, neighbours=3, jvp_batch=1)
    parts = [one_per_call.update(one_per_call.init(), reference[rows], codec, reference)
             for rows in (slice(0, 3), slice(3, 7))]
    split = metric.finalize(metric.merge(parts[1], parts[0]))
    for key in whole:
        np.testing.assert_allclose(split[key], whole[key], rtol=1e-6, err_msg=key)


def test_jvps_run_through_a_real_tokenizer_encoder():
    torch.manual_seed(0)
    model = build_tokenizer("conv-tiny", "f4d4", 16).eval()
    x = torch.rand((4, 3, 16, 16), generator=torch.Generator().manual_seed(5)) * 2 - 1
    values = run(lambda im: model.encode(im).mode(), x[:1], x, directions=2, neighbours=2)
    assert all(np.isfinite(v) for v in values.values())
    assert values["latent/fisher/dim_ratio"] == pytest.approx(4 * 4 * 4 / (3 * 16 * 16))


def test_neighbour_directions_skip_the_image_itself_in_a_large_reference_set():
    reference = images(40, 6)  # > 25 rows: where cdist's matmul shortcut would blur the exact 0 of a self-distance
    u = neighbour_directions(reference[:5], reference, k=3)
    assert torch.isfinite(u).all()
    torch.testing.assert_close(u.flatten(2).norm(dim=2), torch.ones(5, 3, dtype=torch.float64))


def test_too_few_reference_images_are_refused():
    x = images(3, 0)
    with pytest.raises(ValueError, match="reference"):
        run(linear_encoder(orthogonal()), x, x, neighbours=3)
