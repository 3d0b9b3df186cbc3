"""Training the DomainNet: AdamW with cosine decay, light label-preserving augmentation, seeded end to end."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from raysweep.features.domain_net import DomainNet

MAX_SHIFT = 0.125  # random translation, as a fraction of the image side
EVAL_BATCH = 256


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


def _holdout(n: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    n_val = max(1, round(n * fraction))
    return perm[n_val:], perm[:n_val]


def train_domain_net(images: torch.Tensor, labels: torch.Tensor | np.ndarray, steps: int, batch_size: int = 64,
                     lr: float = 2e-3, seed: int = 0, val: tuple[torch.Tensor, torch.Tensor | np.ndarray] | None = None,
                     val_fraction: float = 0.1, num_classes: int | None = None, width: int = 32,
                     feature_dim: int = 128, device: str | torch.device = "cpu") -> tuple[DomainNet, dict[str, float]]:
    """Train a DomainNet classifier; returns (model in eval mode on CPU, {"train_accuracy", "val_accuracy"}).

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
        train_idx, val_idx = _holdout(len(labels), val_fraction, generator)
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
                   "val_accuracy": accuracy(model, val_images, val_labels)}
