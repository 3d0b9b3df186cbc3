"""Test-wide settings: one torch thread (tiny tensors gain nothing from more, and Ray workers share the 2 cores)."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
