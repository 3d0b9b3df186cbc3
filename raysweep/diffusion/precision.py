"""Where the backbone runs in reduced precision, in one place for training, sampling and the evaluation card.

On CUDA the backbone's forward runs under bf16 autocast — in training (as SiT / LightningDiT do) and in sampling, as
is standard for flow/diffusion evaluation; the Euler ODE state, decoding and feature extraction stay float32 so FID
sees full-precision images. Elsewhere (CPU) everything is float32.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

FLOAT32 = "float32"  # the card's precision for a run with no autocast at all


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype the backbone is autocast to on `device`, or None (float32)."""
    return torch.bfloat16 if device.type == "cuda" else None


def backbone_autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Context for backbone forwards on `device`: bf16 autocast on CUDA, a no-op elsewhere."""
    dtype = autocast_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def sampling_precision(device: torch.device) -> str:
    """The evaluation card's `precision` for samples drawn on `device`; it starts with the backbone's compute dtype
    name, so runs sampled in bf16 never share a card with float32 ones."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return FLOAT32
    return f"{str(dtype).removeprefix('torch.')} autocast backbone; {FLOAT32} ODE state, decoding and features"
