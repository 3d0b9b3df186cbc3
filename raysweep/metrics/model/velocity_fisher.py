"""FI(t), FIR(t) and mmse(t) from a trained diffusion model's velocity field (METRICS.md §8), no Gaussian model.

On the path x_t = t·x1 + (1−t)·x0 the optimal velocity is v = (E[x1|x_t] − x_t)/(1−t), so the model gives the
score s = −(x_t − t·v)/(1−t) and the denoiser x̂1 = x_t + (1−t)·v. Per time on the grid (t < 1):
FI(t) = E‖s‖², mmse(t) = E‖x1 − x̂1‖², both ÷ d; FIR(t) = dFI/dt by central differences on the grid. The same
noise x0 (drawn from the sample id, so any split gives the same sums) is used at every t, which keeps the
curve smooth enough to differentiate. Exact when v is the true conditional velocity (up to Monte Carlo error).
"""
from __future__ import annotations

import numpy as np
import torch

from raysweep.metrics.base import State, Value
from raysweep.metrics.model.base import DiffusionInputs, DiffusionMetric, ModelMetric, ModelOutput, VelocityFn

CURVES_FILE = "fisher_curves.npz"  # the curves beside the diffusion run, also logged on it


def sample_noise(sample_ids: np.ndarray, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """x0 ~ N(0, I) of shape (B, *shape), row i a function of (seed, sample_ids[i]) only."""
    rows = []
    for sid in np.asarray(sample_ids, np.int64):
        state = np.random.SeedSequence([seed, int(sid) & 0xFFFFFFFF, int(sid) >> 32 & 0xFFFFFFFF]).generate_state(2)
        gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        rows.append(torch.randn(shape, generator=gen))
    return torch.stack(rows)


class VelocityFisher(ModelMetric, DiffusionMetric):
    """The model's FI/FIR/mmse curves; keys `latent/fisher/dm_*` (logged on the diffusion run)."""

    name = "velocity_fisher"
    perspective = "fisher"

    def __init__(self, t_points: int = 20, t_max: float = 0.95, seed: int = 0) -> None:
        if t_points < 3 or not 0 < t_max < 1:
            raise ValueError(f"velocity_fisher: need t_points >= 3 and 0 < t_max < 1; got t_points={t_points}, "
                             f"t_max={t_max}")
        self.t_grid = np.linspace(0.0, t_max, t_points)
        self.seed = seed

    @property
    def keys(self) -> tuple[str, ...]:
        curves = [f"{c}{s}" for c in ("dm_fi_t", "dm_fir_t", "dm_mmse_t") for s in ("", "_grid")]
        return tuple(self.key(m) for m in ("dm_mmse_mean", *curves))

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {self.key("dm_mmse_mean"): False}

    @torch.no_grad()
    def update(self, state: State, latents: torch.Tensor, labels: torch.Tensor, sample_ids: np.ndarray,
               velocity: VelocityFn) -> State:
        """latents (B, C, H, W) standardised (what the model was trained on), labels (B,), sample_ids [B]; the
        field runs on the latents' device."""
        if len(latents) == 0:
            return state
        x1 = latents.float()
        x0 = sample_noise(sample_ids, tuple(x1.shape[1:]), self.seed).to(x1)
        fi, err = np.zeros(len(self.t_grid)), np.zeros(len(self.t_grid))
        for i, t in enumerate(self.t_grid):
            xt = t * x1 + (1 - t) * x0  # (B, C, H, W)
            v = velocity(xt, torch.full((len(x1),), float(t), device=x1.device), labels).float()
            score = -(xt - t * v) / (1 - t)
            fi[i] = float(score.flatten(1).double().square().sum())
            err[i] = float((x1 - xt - (1 - t) * v).flatten(1).double().square().sum())
        part = {"grid": tuple(self.t_grid.tolist()), "d": (int(x1[0].numel()),), "count": float(len(x1)),
                "fi": fi, "mmse": err}
        return self.merge(state, part)

    def run(self, data: DiffusionInputs) -> ModelOutput:
        state = self.init()
        for i in range(0, len(data.latents), data.batch_size):
            rows = slice(i, i + data.batch_size)
            state = self.update(state, data.latents[rows].to(data.device), data.labels[rows].to(data.device),
                                data.sample_ids[rows], data.velocity)
        return ModelOutput(self.finalize(state), curves_file=CURVES_FILE)

    def _finalize(self, state: State) -> dict[str, Value]:
        norm = state["count"] * state["d"][0]
        fi, err = state["fi"] / norm, state["mmse"] / norm
        grid = self.t_grid
        out: dict[str, Value] = {self.key("dm_mmse_mean"): float(np.trapezoid(err, grid) / (grid[-1] - grid[0]))}
        for name, curve in (("dm_fi_t", fi), ("dm_fir_t", np.gradient(fi, grid)), ("dm_mmse_t", err)):
            out[self.key(name)] = curve
            out[self.key(f"{name}_grid")] = grid.copy()
        return out
