"""Training the DomainNet: AdamW with cosine decay, light label-preserving augmentation, seeded end to end; then
the gFID validity check: a network that scores generations must rate blurred real images far from real ones."""
from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from raysweep.features.domain_net import DomainNet
from raysweep.features.frechet import feature_frechet_distance

MAX_SHIFT = 0.125  # random translation, as a fraction of the image side
EVAL_BATCH = 256
BLUR_SIGMA = 1.0  # pixels: the detail loss the check asks the FID features to see


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation (border padding), per image. x [B,3,H,W] -> [B,3,H,W].

    Horizontal flips and shifts keep the class of centred shapes and colour-coded blobs; vertical flips would not
    (triangles, hearts), so they are left out."""
    b = x.shape[0]
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (2 * MAX_SHIFT)  # grid units: the side is 2
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x), padding_mode="border", align_corners=False)


@torch.no_grad()
def accuracy(model: DomainNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in eval mode; images [N,3,H,W] in [-1, 1], labels [N]."""
    model.eval()
    device = next(model.parameters()).device
    hits = sum(int((model(x.to(device)).argmax(1).cpu() == y).sum())
               for x, y in zip(images.split(EVAL_BATCH), labels.split(EVAL_BATCH)))
    return hits / max(1, len(labels))


def gaussian_blur(x: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur (radius ceil(2 sigma), replicate borders) of x [B,3,H,W]."""
    radius = max(1, math.ceil(2 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2 / (2 * sigma**2))
    taps = (taps / taps.sum()).repeat(x.shape[1], 1, 1, 1)  # (3, 1, 1, k)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), taps, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), taps.transpose(-1, -2), groups=x.shape[1])


class FeatureModel(Protocol):
    """What `blur_check` needs of a study-trained network (DomainNet, the autoencoder scorer)."""

    feature_dim: int

    def eval(self) -> Any: ...

    def features(self, x: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def blur_check(model: FeatureModel, images: torch.Tensor,
               sigma: float = BLUR_SIGMA) -> dict[str, float]:
    """FD between two halves of real images [N,3,H,W] in [-1, 1] (even / odd rows) and FD between the blurred first
    half and the second, in a study-trained network's FID features (`model.features`, `model.feature_dim`: DomainNet,
    DomainAutoencoder), with images on the uint8 grid the scorer sees.
    NaN when a half has no more images than feature dimensions (a singular covariance).

    FD of N/2 vs N/2 images is mostly sample-size bias (FD_N ~ FD_inf + b/N), so it is not the floor a study's gFID
    (N generated vs the whole training split) should be read against: the half size and KID, which is unbiased,
    are recorded beside it so the card says so."""
    model.eval()
    if len(images) // 2 <= model.feature_dim:
        return {"check_fd_real_halves": float("nan"), "check_fd_blurred": float("nan"), "check_blur_sigma": sigma}

    def features(x: torch.Tensor) -> np.ndarray:
        x = ((x + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1  # what to_uint8 -> the extractor does
        return torch.cat([model.features(b) for b in x.split(EVAL_BATCH)]).double().numpy()

    from raysweep.features.sample_bias import kid  # torch-fidelity: imported when a network is trained

    a, b = images[0::2], images[1::2]
    fa, fb, fblur = features(a), features(b), features(gaussian_blur(a, sigma))
    return {"check_fd_real_halves": feature_frechet_distance(fa, fb),
            "check_fd_blurred": feature_frechet_distance(fblur, fb),
            "check_kid_real_halves": kid(fa, fb)[0], "check_kid_blurred": kid(fblur, fb)[0],
            "check_half_size": float(len(b)), "check_blur_sigma": sigma}


def holdout_split(n: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    n_val = max(1, round(n * fraction))
    return perm[n_val:], perm[:n_val]


def train_domain_net(images: torch.Tensor, labels: torch.Tensor | np.ndarray, steps: int, batch_size: int = 64,
                     lr: float = 2e-3, seed: int = 0, val: tuple[torch.Tensor, torch.Tensor | np.ndarray] | None = None,
                     val_fraction: float = 0.1, num_classes: int | None = None, width: int = 32,
                     feature_dim: int = 128, device: str | torch.device = "cpu") -> tuple[DomainNet, dict[str, float]]:
    """Train a DomainNet classifier; returns (model in eval mode on CPU, {"train_accuracy", "val_accuracy", and the
    `blur_check` numbers on the validation images}).

    images float [N,3,H,W] in [-1, 1]; labels int [N] in [0, num_classes) (num_classes defaults to max + 1).
    Without `val`, a seeded `val_fraction` of the images is held out for the validation accuracy."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if images.dim() != 4 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"images [N,3,H,W] and labels [N] must match, got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
    generator = torch.Generator().manual_seed(seed)
    if val is None:
        train_idx, val_idx = holdout_split(len(labels), val_fraction, generator)
        val_images, val_labels = images[val_idx], labels[val_idx]
        images, labels = images[train_idx], labels[train_idx]
    else:
        val_images, val_labels = val[0], torch.as_tensor(val[1], dtype=torch.long)
    num_classes = num_classes or int(max(labels.max(), val_labels.max())) + 1

    torch.manual_seed(seed)  # parameter initialisation
    model = DomainNet(num_classes, width=width, feature_dim=feature_dim).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    n = len(labels)
    for _ in range(steps):
        model.train()
        idx = torch.randint(n, (min(batch_size, n),), generator=generator)
        x = augment(images[idx], generator).to(device)
        loss = F.cross_entropy(model(x), labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model = model.cpu().eval()
    return model, {"train_accuracy": accuracy(model, images, labels),
                   "val_accuracy": accuracy(model, val_images, val_labels), **blur_check(model, val_images)}
