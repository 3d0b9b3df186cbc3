"""The GAN term of the tokenizer objective (paper eq. 12, λ2 = 0.5, after taming / LDM / VA-VAE).

A PatchGAN discriminator (taming's NLayerDiscriminator: stride-2 4x4 convs, BatchNorm, LeakyReLU 0.2, one logit
per patch) is trained with the hinge loss; the generator term -mean D(x̂) enters the autoencoder loss as
λ2 · w · (-mean D(x̂)) with taming's adaptive weight w = ‖∇_W L_rec‖ / (‖∇_W L_gan‖ + 1e-4), clamped to [0, 1e4]
and detached, W = the decoder's last layer. Both terms switch on at `start` (taming's `disc_start`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

ADAPTIVE_MAX = 1e4  # taming's clamp of the GAN weight
DISC_BETAS = (0.5, 0.9)


@dataclass(frozen=True)
class GanConfig:
    weight: float = 0.5  # λ2
    start: int = 0  # first step at which discriminator and generator terms are on
    channels: int = 64  # taming's ndf
    max_layers: int = 3  # taming's n_layers; fewer for small images (each halves the side)
    lr: float | None = None  # discriminator lr; None: the autoencoder's

    def __post_init__(self) -> None:
        if self.weight < 0 or self.start < 0 or self.channels < 1 or self.max_layers < 1:
            raise ValueError(f"invalid GanConfig {self}: weight, start >= 0; channels, max_layers >= 1")


class PatchGAN(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] -> patch logits (B, 1, h, w). `n_layers` stride-2 stages, capped so at least
    a 1x1 logit map is left after the two stride-1 4x4 convs."""

    def __init__(self, image_size: int, channels: int = 64, max_layers: int = 3) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"PatchGAN needs images of at least 8x8, got {image_size}")
        n_layers = max(1, min(max_layers, int(math.log2(image_size / 3))))
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, n_layers + 1):
            out = channels * min(2 ** i, 8)
            layers += [nn.Conv2d(width, out, 4, 2 if i < n_layers else 1, 1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():  # taming's weights_init
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """½ (mean relu(1 - D(x)) + mean relu(1 + D(x̂))); logits of any shape."""
    return 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())


def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
    """‖∇_layer rec‖ / (‖∇_layer gan‖ + 1e-4), clamped to [0, 1e4], detached (taming's calculate_adaptive_weight)."""
    g_rec = torch.autograd.grad(rec_loss, layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, ADAPTIVE_MAX).detach()


class Adversarial:
    """Discriminator, its optimizer and the two loss terms of one tokenizer run."""

    def __init__(self, config: GanConfig, image_size: int, lr: float, device: torch.device) -> None:
        self.config = config
        self.discriminator = PatchGAN(image_size, config.channels, config.max_layers).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr or lr, betas=DISC_BETAS)

    def active(self, step: int) -> bool:
        return self.config.weight > 0 and step >= self.config.start

    def generator_loss(self, recon: torch.Tensor, rec_loss: torch.Tensor,
                       layer: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """λ2 · w · (-mean D(x̂)); recon (B, 3, H, W) attached to the decoder, rec_loss the scalar it is balanced to."""
        self.discriminator.train()
        g_loss = -self.discriminator(recon).mean()
        weight = adaptive_gan_weight(rec_loss, g_loss, layer)
        return self.config.weight * weight * g_loss, {"g_loss": g_loss.item(), "gan_weight": weight.item()}

    def discriminator_step(self, images: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
        """One hinge-loss step of the discriminator on real images and detached reconstructions (B, 3, H, W)."""
        self.discriminator.train()
        d_loss = hinge_d_loss(self.discriminator(images), self.discriminator(recon.detach()))
        self.optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.optimizer.step()
        return {"d_loss": d_loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
