"""Paper eq. 12's perceptual and GAN terms: PatchGAN shapes, hinge loss and adaptive weight against hand
computations, the LPIPS-style distance against a loop, the GAN schedule in the trainer and exact resume with it."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from raysweep.features.domain_net import DomainNet
from raysweep.tokenizers import (
    GanConfig,
    PatchGAN,
    PerceptualDistance,
    TokenizerTrainer,
    build_regularizer,
    build_tokenizer,
    domain_perceptual,
    lpips_vgg,
    perceptual_distance,
)
from raysweep.tokenizers.adversarial import adaptive_gan_weight, hinge_d_loss

GAN = GanConfig(weight=0.5, start=2, channels=8)


def images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("size, side", [(8, 2), (16, 2), (32, 2), (256, 30)])
def test_patchgan_logit_map(size: int, side: int) -> None:
    """taming's 3-layer PatchGAN gives 30x30 logits at 256; small images get fewer stride-2 layers."""
    with torch.device("meta"):
        out = PatchGAN(size)(torch.empty(2, 3, size, size))
    assert out.shape == (2, 1, side, side)


def test_hinge_loss_closed_form() -> None:
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    # relu(1 - real) = [0, 1] -> 0.5; relu(1 + fake) = [0, 1.5] -> 0.75
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.5 + 0.75))


def test_adaptive_gan_weight_is_the_gradient_norm_ratio() -> None:
    layer = nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    rec, gan = (x @ layer.T).abs().mean(), -(x @ layer.T).sum() * 0.01
    rec.backward(retain_graph=True)
    g_rec = layer.grad.norm().item()
    layer.grad = None
    gan.backward(retain_graph=True)
    g_gan = layer.grad.norm().item()
    assert adaptive_gan_weight(rec, gan, layer).item() == pytest.approx(g_rec / (g_gan + 1e-4), rel=1e-5)


def test_perceptual_distance_matches_a_loop() -> None:
    """With identity stages: mean over pixels of Σ_c (x/‖x‖_c - y/‖y‖_c)², summed over stages, batch mean."""
    x, y = images(2, 4, seed=1), images(2, 4, seed=2)
    dist = PerceptualDistance([nn.Identity(), nn.Identity()], [torch.tensor([1.0, 2.0, 0.0])] * 2)
    expected = []
    for b in range(2):
        per_pixel = []
        for i in range(4):
            for j in range(4):
                u, v = x[b, :, i, j].numpy(), y[b, :, i, j].numpy()
                d = (u / np.linalg.norm(u) - v / np.linalg.norm(v)) ** 2
                per_pixel.append(d[0] + 2 * d[1])
        expected.append(2 * np.mean(per_pixel))
    assert dist(x, y).item() == pytest.approx(float(np.mean(expected)), rel=1e-5)
    assert dist(x, x).item() == 0.0


def test_domain_fallback_is_frozen_and_differentiable_in_the_reconstruction() -> None:
    torch.manual_seed(0)
    net = DomainNet(num_classes=3, width=8, feature_dim=16)
    dist = perceptual_distance(None, net)
    x, y = images(2), images(2, seed=3).requires_grad_()
    d = dist(x, y)
    d.backward()
    assert d.item() > 0 and y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in net.body[:6].parameters())
    assert dist(x, x).item() == 0.0
    with pytest.raises(ValueError, match="LPIPS weights file"):
        perceptual_distance(None, None)


def test_lpips_missing_files_say_where_they_were_looked_for(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RAYSWEEP_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"lpips.*{tmp_path / 'missing.pth'}.*PerceptualSimilarity"):
        lpips_vgg(tmp_path / "missing.pth")
    lin = tmp_path / "vgg.pth"
    torch.save({f"lin{i}.model.1.weight": torch.ones(1, c, 1, 1) for i, c in enumerate([64, 128, 256, 512, 512])},
               lin)
    with pytest.raises(FileNotFoundError, match=f"vgg16.*{tmp_path / 'vgg16-397923af.pth'}.*VGG16_Weights"):
        lpips_vgg(lin)


def gan_trainer(seed: int = 0) -> TokenizerTrainer:
    """The perceptual network is a frozen input like feature_fn (not trainer state): the same for every seed."""
    torch.manual_seed(0)
    perceptual = domain_perceptual(DomainNet(num_classes=3, width=8, feature_dim=16))
    torch.manual_seed(seed)
    model = build_tokenizer("conv-tiny", "f4d4", 16)
    return TokenizerTrainer(model, build_regularizer("baseline"), lr=1e-3, batch_size=4, seed=seed,
                            perceptual_weight=1.0, perceptual_fn=perceptual, gan=GAN)


def test_gan_switches_on_at_its_start_step() -> None:
    t = gan_trainer()
    disc = t.adversarial.discriminator
    before = [p.detach().clone() for p in disc.parameters()]
    history = t.fit(images(8), steps=4)
    assert all("d_loss" not in h and "g_loss" not in h for h in history[:2])
    assert all({"d_loss", "g_loss", "gan_weight", "perceptual"} <= h.keys() for h in history[2:])
    assert all(np.isfinite(v) for h in history for v in h.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, disc.parameters()))


def test_resume_with_gan_reproduces_the_uninterrupted_run() -> None:
    """Discriminator weights, BatchNorm statistics and its Adam state travel in the trainer's state dict."""
    data = images(16, seed=5)
    full = gan_trainer().fit(data, steps=5)
    first = gan_trainer()
    head = first.fit(data, steps=3)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = gan_trainer(seed=9)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    assert head + second.fit(data, steps=2) == full
