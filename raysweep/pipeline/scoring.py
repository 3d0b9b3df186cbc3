"""The study's scoring network (stage 0's output), loaded once per worker process."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raysweep.features import FeatureSpec, load_domain_net, resolve_feature_network, score_images
from raysweep.pipeline.context import TrialContext

DOMAIN_FILE = "domain.pt"


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float images -> uint8 [N,3,H,W], the input format of torch-fidelity."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


@dataclass(frozen=True)
class ScoringNetwork:
    spec: FeatureSpec
    model: Any  # the DomainNet for `domain`, else None

    def score(self, generated: np.ndarray, reference: np.ndarray, metrics: tuple[str, ...]) -> dict[str, float]:
        return score_images(generated, reference, self.spec, metrics=metrics)


@functools.lru_cache(maxsize=4)
def _load(name: str, weights: str | None) -> ScoringNetwork:
    spec = resolve_feature_network(name, weights_path=weights)
    model = load_domain_net(Path(weights)).eval() if name == "domain" and weights else None
    return ScoringNetwork(spec, model)


def feature_network(ctx: TrialContext) -> ScoringNetwork:
    return _load(ctx.feature_network, ctx.feature_weights)
