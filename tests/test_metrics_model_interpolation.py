"""iFID's pieces: slerp/linear in closed form, partner sampling ∝ softmax(−MSE) among the cosine top-k, and
interpolants of identical latents that decode to the reconstructions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raysweep.metrics.model import Codec, InterpolationFID, choose_partners, linear, slerp


def test_slerp_closed_forms():
    a = torch.tensor([[3.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 3.0, 0.0, 0.0]])
    torch.testing.assert_close(slerp(a, b, 0.5), torch.tensor([[3 / 2**0.5, 3 / 2**0.5, 0.0, 0.0]]))
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    torch.testing.assert_close(slerp(a, a, 0.3), a)
    torch.testing.assert_close(linear(a, b, 0.25), torch.tensor([[2.25, 0.75, 0.0, 0.0]]))


def test_partners_are_drawn_from_the_cosine_top_k_with_softmax_of_minus_mse():
    reference = torch.tensor([[1.0, 0.0], [1.5, 0.1], [0.0, 1.0]])  # rows 0 and 1 are the cosine top-2 of q
    queries = torch.tensor([[1.0, 0.05]]).repeat(20000, 1)
    picks = choose_partners(queries, reference, k=2, seed=0)
    mse = np.array([((reference[i] - queries[0]) ** 2).mean().item() for i in (0, 1)])
    expected = np.exp(-mse) / np.exp(-mse).sum()
    assert set(np.unique(picks)) == {0, 1}
    assert (picks == 0).mean() == pytest.approx(expected[0], abs=0.01)
    assert choose_partners(reference, reference, k=1, seed=0, exclude_self=True)[0] == 1


def test_interpolating_identical_latents_reproduces_the_reconstructions():
    torch.manual_seed(0)
    decoder = torch.nn.ConvTranspose2d(4, 3, kernel_size=2, stride=2).requires_grad_(False)
    queries = torch.randn(5, 4, 3, 3)
    mean, std = torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([1.0, 2.0, 0.5, 1.5])
    codec = Codec(lambda x: x, decoder, mean, std)
    metric = InterpolationFID(k=3, batch_size=2)
    decoded = metric.interpolants(queries, queries.repeat(3, 1, 1, 1), codec)  # every top-3 holds only copies
    torch.testing.assert_close(decoded, decoder(queries * std[:, None, None] + mean[:, None, None]))
    assert metric.result(1.5) == {"latent/continuity/ifid": 1.5}
    different = metric.interpolants(queries, torch.randn(6, 4, 3, 3), codec)
    assert not torch.allclose(different, decoded, atol=1e-3)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="slerp"):
        InterpolationFID(mode="cubic")
    with pytest.raises(ValueError, match="reference"):
        choose_partners(torch.ones(2, 3), torch.ones(2, 3), k=2, seed=0, exclude_self=True)
