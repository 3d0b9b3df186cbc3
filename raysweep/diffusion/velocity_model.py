"""A trained velocity field on disk: how to rebuild the backbone and its (EMA) weights, for metrics after training."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from raysweep.atomic import atomic_file
from raysweep.diffusion.backbones import build_backbone


def save_velocity_model(path: Path, model: torch.nn.Module, build: dict[str, Any]) -> None:
    """A plain dict: `build_backbone` keyword arguments (name, in_channels, input_size, num_classes, patch_size,
    overrides) and the state dict of the (EMA) model, loadable with `torch.load(weights_only=True)`."""
    with atomic_file(path) as tmp:
        torch.save({"build": build, "state_dict": model.state_dict()}, tmp)


def load_velocity_model(path: Path) -> torch.nn.Module:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = build_backbone(**blob["build"])
    model.load_state_dict(blob["state_dict"])
    return model.eval().requires_grad_(False)
