"""TokenizerTrainer: loss goes down on shapes-like images, exact resume, encode/reconstruct, PSNR, objective hooks."""
from __future__ import annotations

import io

import pytest
import torch

from raysweep.tokenizers import (
    DiagonalGaussian,
    ReconstructionObjective,
    TokenizerTrainer,
    build_regularizer,
    build_tokenizer,
    psnr,
)


def shapes_like(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """n images (n, 3, size, size) in [-1, 1]: a coloured square on a coloured background."""
    g = torch.Generator().manual_seed(seed)
    background = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    colour = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    lo = torch.randint(0, size // 2, (n, 2), generator=g)
    side = torch.randint(size // 4, size // 2, (n, 1), generator=g)
    r = torch.arange(size)
    rows = (r >= lo[:, :1]) & (r < lo[:, :1] + side)  # (n, size)
    cols = (r >= lo[:, 1:]) & (r < lo[:, 1:] + side)
    inside = (rows[:, :, None] & cols[:, None, :])[:, None]  # (n, 1, size, size)
    return torch.where(inside, colour, background)


def trainer(regularizer: str = "baseline", seed: int = 0, **params: object) -> TokenizerTrainer:
    torch.manual_seed(seed)
    model = build_tokenizer("conv-tiny", "f4d4", 16)
    return TokenizerTrainer(model, build_regularizer(regularizer, dict(params)), lr=5e-4, batch_size=8, seed=seed)


def test_tiny_fit_decreases_the_loss() -> None:
    images = shapes_like(64)
    t = trainer()
    before = psnr(images, t.reconstruct(images))
    history = t.fit(images, steps=60)
    assert len(history) == 60 and t.step == 60
    first, last = sum(h["l1"] for h in history[:10]) / 10, sum(h["l1"] for h in history[-10:]) / 10
    assert last < 0.9 * first
    assert psnr(images, t.reconstruct(images)) > before + 1


def test_resume_reproduces_the_uninterrupted_run() -> None:
    """lmr draws masks from the trainer's generator and owns a mask token: both must survive the checkpoint."""
    images = shapes_like(32, seed=1)
    params = {"mask_probs": [0.2, 0.2, 0.2]}
    full = trainer("lmr", **params).fit(images, steps=6)

    first = trainer("lmr", **params)
    head = first.fit(images, steps=3)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = trainer("lmr", seed=99, **params)  # a different init and RNG, all overwritten by the checkpoint
    second.load_state_dict(torch.load(buffer, weights_only=True))
    assert second.step == 3
    tail = second.fit(images, steps=3)
    assert head + tail == full
    assert len({h["lmr_ratio"] for h in full}) > 1  # the draws did vary


def test_same_seed_same_run_and_on_log_sees_every_step() -> None:
    images = shapes_like(16)
    seen: list[tuple[int, float]] = []
    a = trainer("eq").fit(images, steps=3, on_log=lambda step, logs: seen.append((step, logs["loss"])))
    b = trainer("eq").fit(images, steps=3)
    assert a == b
    assert seen == [(i + 1, h["loss"]) for i, h in enumerate(a)]


def test_encode_and_reconstruct_use_the_posterior_mean_in_batches() -> None:
    t = trainer()
    images = shapes_like(10)
    latents = t.encode(images, batch_size=3)
    assert latents.shape == (10, 4, 4, 4)
    with torch.no_grad():
        t.model.eval()
        posterior = t.model.encode(images)
        assert torch.allclose(latents, posterior.mean, atol=1e-5)
        assert torch.allclose(t.reconstruct(images, batch_size=4), t.model.decode(posterior.mean), atol=1e-5)


def test_psnr_closed_form() -> None:
    x = torch.zeros(2, 3, 4, 4)
    assert psnr(x, x + 0.2) == pytest.approx(20.0)  # [0, 1] scale: error 0.1, mse 0.01
    assert psnr(x, x.clone().fill_(0.02)) == pytest.approx(40.0)
    per_image = torch.stack([x[0] + 0.2, x[1] + 0.02])
    assert psnr(x, per_image) == pytest.approx(30.0)  # mean of per-image PSNRs
    assert psnr(x - 1, x - 3) == pytest.approx(120.0)  # reconstructions are clamped to [-1, 1]; mse floor 1e-12


def test_objective_is_l1_plus_weighted_terms() -> None:
    g = torch.Generator().manual_seed(0)
    images, recon = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    posterior = DiagonalGaussian(torch.randn(2, 4, 2, 2, generator=g))
    mse = lambda a, b: (a - b).square().mean()  # noqa: E731
    objective = ReconstructionObjective(kl_weight=1e-3, perceptual_weight=0.5, perceptual_fn=mse)
    loss, logs = objective(images, recon, posterior)
    l1 = (images - recon).abs().mean()
    expected = l1 + 1e-3 * posterior.kl() + 0.5 * mse(images, recon)
    torch.testing.assert_close(loss, expected)
    assert set(logs) == {"l1", "kl", "perceptual"}
    default_loss, default_logs = ReconstructionObjective()(images, recon, posterior)
    torch.testing.assert_close(default_loss, l1 + 1e-6 * posterior.kl())
    assert set(default_logs) == {"l1", "kl"}


def test_objective_hooks_need_their_functions() -> None:
    with pytest.raises(ValueError, match="perceptual_weight = 0.5 needs a perceptual_fn"):
        ReconstructionObjective(perceptual_weight=0.5)
    with pytest.raises(ValueError, match="kl_weight must be >= 0"):
        ReconstructionObjective(kl_weight=-1.0)
