"""DomainNet: a small CNN classifier trained on the study's own images, so FID/IS/FD and the repa/vf regularizers
have a feature network on machines that cannot download Inception, DINOv2 or CLIP weights.

One network gives the three views scoring and alignment need: pooled features (FID, KID, FD, PRC), class logits
(IS), and a spatial token map at 1/4 resolution (REPA / VF alignment targets). GroupNorm, not BatchNorm, so an
image's features never depend on what else is in its batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from raysweep.atomic import atomic_file

MIN_IMAGE_SIZE = 16  # two stride-2 stages leave a 4x4 token grid
CHECKPOINT_FORMAT = "raysweep.domain_net/1"


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                         nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())


class DomainNet(nn.Module):
    """Images float [B,3,H,W] in [-1, 1], H and W >= 16."""

    checkpoint_format = CHECKPOINT_FORMAT

    def __init__(self, num_classes: int, width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes, self.width, self.feature_dim = num_classes, width, feature_dim
        self.body = nn.Sequential(
            _conv_block(3, width, 1),                  # (B, w, H, W)
            _conv_block(width, width, 1),              # (B, w, H, W)
            _conv_block(width, 2 * width, 2),          # (B, 2w, H/2, W/2)
            _conv_block(2 * width, 2 * width, 1),      # (B, 2w, H/2, W/2)
            _conv_block(2 * width, 4 * width, 2),      # (B, 4w, H/4, W/4)
            _conv_block(4 * width, 4 * width, 1),      # (B, 4w, H/4, W/4)
            nn.Conv2d(4 * width, feature_dim, 1),      # (B, D, H/4, W/4)
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def config(self) -> dict[str, int]:
        """Constructor arguments, as saved in checkpoints."""
        return {"num_classes": self.num_classes, "width": self.width, "feature_dim": self.feature_dim}

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial feature map [B, D, H/4, W/4]: the alignment target of repa / vf."""
        if x.dim() != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < MIN_IMAGE_SIZE:
            raise ValueError(f"DomainNet expects images [B,3,H,W] with H, W >= {MIN_IMAGE_SIZE}, got {tuple(x.shape)}")
        return self.body(x)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features [B, D] (FID/FD space) and logits [B, num_classes] (IS), in one pass."""
        pooled = self.patch_tokens(x).mean(dim=(-2, -1))  # (B, D)
        return pooled, self.head(pooled)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, D]: the FID layer."""
        return self.features_and_logits(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes]."""
        return self.features_and_logits(x)[1]


def save_domain_net(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """A study-trained network (DomainNet, DomainAutoencoder) as a plain dict (its `checkpoint_format`, constructor
    args, state dict, meta of python scalars/strings), loadable with weights_only."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_file(Path(path)) as tmp:
        torch.save({"format": model.checkpoint_format, "config": model.config(),  # type: ignore[operator]
                    "state_dict": state, "meta": dict(meta or {})}, tmp)


def load_domain_checkpoint(path: str | Path, cls: type[Any] = DomainNet) -> tuple[Any, dict[str, Any]]:
    """(model of `cls` in eval mode on CPU, meta). ValueError for a file that is not a `cls` checkpoint."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    expected = cls.checkpoint_format
    if not isinstance(blob, dict) or blob.get("format") != expected:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"{path} is not a {cls.__name__} checkpoint (format {found!r}, expected {expected!r})")
    model = cls(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob["meta"]


def load_domain_net(path: str | Path) -> DomainNet:
    return load_domain_checkpoint(path)[0]
