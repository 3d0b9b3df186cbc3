"""What every trial needs to know about its study, as a small picklable value (Tune configs must be plain data)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from raysweep.engine.store import Store


@dataclass(frozen=True)
class TrialContext:
    root: str
    tracking_uri: str
    experiment: str
    study_run_id: str
    dataset_key: str
    num_classes: int
    image_size: int
    feature_network: str
    feature_weights: str | None
    torch_threads: int
    log_every: int = 50
    latent_root: str | None = None  # storage.latents: a directory or a pyarrow.fs URI

    @property
    def store(self) -> Store:
        return Store(Path(self.root), self.latent_root)


def trial_device() -> torch.device:
    """The GPU Ray gave this worker (it sets CUDA_VISIBLE_DEVICES per trial), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup_worker(ctx: TrialContext) -> torch.device:
    """Per-process settings (one torch thread per reserved CPU, no interactive backends); returns the device."""
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    torch.set_num_threads(ctx.torch_threads)
    return trial_device()
