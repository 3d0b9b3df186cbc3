"""DomainAutoencoder: the study's second scorer, a network no regularizer aligns to.

gFID from the DomainNet alone is circular for `vf` / `repa` (they align latents to its features), and one network's
taste is not a measurement. This one differs in every respect a scorer's bias can come from: architecture (strided
4x4 convolutions and ReLU without normalisation, an encoder-decoder, no classifier head), objective (pixel
reconstruction of augmented images: no labels), and seed. Its FID features are the spatial means of its two deepest
rectified encoder stages: the nonlinear responses to edges and texture are what blur takes away.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from raysweep.features.domain_train import EVAL_BATCH, augment, blur_check, holdout_split

CHECKPOINT_FORMAT = "raysweep.domain_autoencoder/1"
SEED = 1  # the DomainNet trains with seed 0
MIN_IMAGE_SIZE = 8  # two stride-2 stages leave a 2x2 code map


class DomainAutoencoder(nn.Module):
    """Images float [B,3,H,W] in [-1, 1], H and W >= 8 and divisible by 4. FID features [B, 6 width]."""

    checkpoint_format = CHECKPOINT_FORMAT

    def __init__(self, width: int = 16, code_channels: int = 16) -> None:
        super().__init__()
        self.width, self.code_channels = width, code_channels
        self.feature_dim = 2 * width + 4 * width
        w = width
        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.ReLU()),                # (B, w, H, W)
            nn.Sequential(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.ReLU()),  # (B, 2w, H/2, W/2)
            nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU()),        # (B, 2w, H/2, W/2): features
            nn.Sequential(nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.ReLU()),  # (B, 4w, H/4, W/4): features
            nn.Conv2d(4 * w, code_channels, 1),                                      # (B, c, H/4, W/4): the code
        ])
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(code_channels, 2 * w, 4, stride=2, padding=1), nn.ReLU(),  # (B, 2w, H/2, W/2)
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.ReLU(),              # (B, w, H, W)
            nn.Conv2d(w, 3, 3, padding=1),                                                # (B, 3, H, W)
        )
        # per-dimension standardisation of the features over the training images, set once training ends: KID's
        # cubic kernel in float32 loses all precision on raw ReLU means of size ~10, and FD is not dominated by the
        # few dimensions of largest spread (colour)
        self.register_buffer("feature_mean", torch.zeros(self.feature_dim))
        self.register_buffer("feature_scale", torch.ones(self.feature_dim))

    def config(self) -> dict[str, int]:
        """Constructor arguments, as saved in checkpoints."""
        return {"width": self.width, "code_channels": self.code_channels}

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < MIN_IMAGE_SIZE or x.shape[-1] % 4 or \
                x.shape[-2] % 4:
            raise ValueError(f"DomainAutoencoder expects images [B,3,H,W] with H, W >= {MIN_IMAGE_SIZE} and "
                             f"divisible by 4, got {tuple(x.shape)}")
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial means of the two deepest rectified encoder stages, concatenated [B, D] (the code is linear,
        and a spatial mean of a linear map of the image barely moves under blur)."""
        return torch.cat([m.mean(dim=(-2, -1)) for m in self._encode(x)[2:4]], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """FID features [B, D]: `raw_features`, standardised per dimension over the training images."""
        return (self.raw_features(x) - self.get_buffer("feature_mean")) / self.get_buffer("feature_scale")

    @torch.no_grad()
    def standardise(self, images: torch.Tensor) -> None:
        """Set the feature standardisation from images [N,3,H,W] in [-1, 1] (the training split)."""
        raw = torch.cat([self.raw_features(b) for b in images.split(EVAL_BATCH)])
        self.get_buffer("feature_mean").copy_(raw.mean(0))
        self.get_buffer("feature_scale").copy_(raw.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction [B,3,H,W]."""
        return self.decoder(self._encode(x)[-1])


@torch.no_grad()
def reconstruction_mse(model: DomainAutoencoder, images: torch.Tensor) -> float:
    model.eval()
    device = next(model.parameters()).device
    total = sum(float(F.mse_loss(model(x.to(device)), x.to(device), reduction="sum")) for x in images.split(EVAL_BATCH))
    return total / images.numel()


def train_domain_autoencoder(images: torch.Tensor, steps: int, batch_size: int = 64, lr: float = 2e-3,
                             seed: int = SEED, val: torch.Tensor | None = None, val_fraction: float = 0.1,
                             width: int = 16, code_channels: int = 16, device: str | torch.device = "cpu"
                             ) -> tuple[DomainAutoencoder, dict[str, float]]:
    """Train on images float [N,3,H,W] in [-1, 1] (no labels); returns (model in eval mode on CPU, {"train_mse",
    "val_mse", and the `blur_check` numbers on the validation images}). Without `val`, a seeded `val_fraction` of
    the images is held out."""
    if images.dim() != 4 or steps < 1 or batch_size < 1:
        raise ValueError(f"images [N,3,H,W], steps >= 1 and batch_size >= 1 required, got {tuple(images.shape)}, "
                         f"steps={steps}, batch_size={batch_size}")
    generator = torch.Generator().manual_seed(seed)
    if val is None:
        train_idx, val_idx = holdout_split(len(images), val_fraction, generator)
        images, val = images[train_idx], images[val_idx]
    torch.manual_seed(seed)  # parameter initialisation
    model = DomainAutoencoder(width, code_channels).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for _ in range(steps):
        model.train()
        x = augment(images[torch.randint(len(images), (min(batch_size, len(images)),), generator=generator)],
                    generator).to(device)
        loss = F.mse_loss(model(x), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model = model.cpu().eval()
    model.standardise(images)
    stats = {"train_mse": reconstruction_mse(model, images), "val_mse": reconstruction_mse(model, val)}
    return model, {**stats, **blur_check(model, val)}
