"""Affine equivariance of the encoder (METRICS.md §7): compare Enc(τ(x)) with τ(Enc(x)).

τ is a rotation by k·90° or a down-scaling by s ∈ (0, 1). Rotations act exactly on both grids. A scaling resizes
image and latent as EQ-VAE does by default (zelaki/eqvae train_eqvae/ldm/models/autoencoder.py, `forward` and
`training_step`, commit c34589c4fb0d2a93da00ef403602a6b4ae223345): plain bilinear
`interpolate(scale_factor=s, align_corners=False)` on both, without antialiasing, so the scaled latent must come out
at the size of Enc(τ(x)) (true when s·H is a multiple of the downsampling factor). `antialias=True` instead resizes
the image to round(s·H) and the latent to the size of Enc(τ(x)), both with antialiased bilinear resampling. Both
are linear and constant-preserving, so a per-position channel map commutes with them exactly.
Per image: consistency = cosine of the two flattened latents (higher is better), error = ‖Enc τx − τ Enc x‖² /
‖τ Enc x‖² (lower is better); both on standardised latents and averaged over images and transforms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from raysweep.metrics.base import State, Value
from raysweep.metrics.model.base import Codec, ImageMetric, TokenizerInputs


@dataclass(frozen=True)
class Transform:
    """A rotation (`quarter_turns` in 1..3) or a down-scaling (`scale` in (0, 1)) of [B, C, H, W] tensors."""

    family: str  # "rotate" or "scale"
    amount: float
    antialias: bool = False  # scale only: antialiased resize to sizes instead of EQ-VAE's plain scale_factor

    @property
    def name(self) -> str:
        return f"{self.family}{int(self.amount) * 90 if self.family == 'rotate' else self.amount:g}"

    def image(self, x: torch.Tensor) -> torch.Tensor:
        if self.family == "rotate":
            return torch.rot90(x, int(self.amount), dims=(-2, -1))
        if not self.antialias:
            return F.interpolate(x, scale_factor=self.amount, mode="bilinear", align_corners=False)
        return resize(x, [max(1, round(self.amount * s)) for s in x.shape[-2:]])

    def latent(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """τ on the latent grid, landing on the spatial size of `like` = Enc(τ(x))."""
        if self.family == "rotate":
            return torch.rot90(z, int(self.amount), dims=(-2, -1))
        if self.antialias:
            return resize(z, like.shape[-2:])
        out = F.interpolate(z, scale_factor=self.amount, mode="bilinear", align_corners=False)
        if out.shape[-2:] != like.shape[-2:]:
            raise ValueError(f"equivariance: scale {self.amount:g} takes the {tuple(z.shape[-2:])} latent to "
                             f"{tuple(out.shape[-2:])} but Enc(τx) is {tuple(like.shape[-2:])}; use scales with s·H a "
                             f"multiple of the downsampling factor, or antialias: true")
        return out


def resize(x: torch.Tensor, size: list[int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)


def make_transforms(rotations: list[int], scales: list[float], antialias: bool = False) -> list[Transform]:
    bad = [k for k in rotations if k not in (1, 2, 3)] + [s for s in scales if not 0 < s < 1]
    if bad or not rotations + scales:
        raise ValueError(f"equivariance: rotations must be quarter turns in 1..3 and scales in (0, 1), at least "
                         f"one of them; got rotations={rotations}, scales={scales}")
    return [Transform("rotate", k) for k in rotations] + [Transform("scale", s, antialias) for s in scales]


def pair_scores(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-image cosine and normalised squared error of a = Enc(τx), b = τ(Enc x), both (B, C, h, w) -> ([B], [B])."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    cos = F.cosine_similarity(a, b, dim=1)
    nmse = (a - b).square().sum(1) / b.square().sum(1).clamp_min(torch.finfo(torch.float64).tiny)
    return cos.cpu().numpy(), nmse.cpu().numpy()


class Equivariance(ImageMetric):
    """Consistency and error per transform family (rotate, scale) and overall; exact under any split."""

    name = "equivariance"
    perspective = "equivariance"

    def __init__(self, rotations: list[int] | None = None, scales: list[float] | None = None,
                 antialias: bool = False) -> None:
        self.transforms = make_transforms([1, 2, 3] if rotations is None else list(rotations),
                                          [0.5, 0.75] if scales is None else list(scales), antialias)
        self.families = sorted({t.family for t in self.transforms})

    @property
    def keys(self) -> tuple[str, ...]:
        suffixes = ["", *(f"_{f}" for f in self.families)]
        return tuple(self.key(f"{m}{s}") for m in ("consistency", "error") for s in suffixes)

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {k: "/consistency" in k for k in self.keys}

    def update_images(self, state: State, images: torch.Tensor, data: TokenizerInputs) -> State:
        return self.update(state, images, data.codec)

    @torch.no_grad()
    def update(self, state: State, images: torch.Tensor, codec: Codec) -> State:
        """images (B, 3, H, W) in [-1, 1], on the device the encoder runs on."""
        z = codec.encode_standardised(images)  # (B, C, h, w)
        cos, nmse = [], []
        for t in self.transforms:
            z_t = codec.encode_standardised(t.image(images))  # Enc(τx)
            c, e = pair_scores(z_t, t.latent(z, z_t))
            cos.append(c.sum())
            nmse.append(e.sum())
        part = {"transforms": tuple(t.name for t in self.transforms), "count": float(len(images)),
                "cos": np.array(cos), "nmse": np.array(nmse)}
        return self.merge(state, part)

    def _finalize(self, state: State) -> dict[str, Value]:
        cos, nmse = state["cos"] / state["count"], state["nmse"] / state["count"]  # (T,) per transform
        family = np.array([t.family for t in self.transforms])
        out: dict[str, Value] = {self.key("consistency"): float(cos.mean()), self.key("error"): float(nmse.mean())}
        for f in self.families:
            out[self.key(f"consistency_{f}")] = float(cos[family == f].mean())
            out[self.key(f"error_{f}")] = float(nmse[family == f].mean())
        return out
