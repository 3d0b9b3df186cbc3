"""Sampling and scoring primitives of a trained velocity model (the diffusion stage's evaluation): the run's noise
and class-balanced labels, the ODE every sample comes from, decoding with the tokenizer, the `gen/...` views of a
CFG grid, trajectory metrics, and the evaluation card; no tracking and no store, so benchmarks and tests use them
as the stage does."""
from __future__ import annotations

import numpy as np
import torch

from raysweep.config.spec import EvaluationSpec, SamplerVariant
from raysweep.data import LatentMeta
from raysweep.diffusion import SampleResult, efficiency, length_ratios, ode_sample, straightness
from raysweep.diffusion.precision import backbone_autocast, sampling_precision
from raysweep.diffusion.sampler import SamplerMethod
from raysweep.features import EvalCard, generation_card
from raysweep.stages.scoring import GENERATION_REFERENCE, ExtraScorers, GenerationScorer, to_uint8
from raysweep.tokenizers.tokenizer import Tokenizer
from raysweep.tracking.keys import BEST_CFG_SCALE, BEST_VIEW, NO_CFG_VIEW, cfg_view, gen_key

NO_CFG = 1.0
SAMPLER = "euler-ode, uniform time grid"


def run_card(scorer: GenerationScorer, dataset_key: str, evaluation: EvaluationSpec, seed: int,
             device: torch.device, extras: ExtraScorers | None = None) -> EvalCard:
    """The card of a run sampled on `device` (its precision is `sample_latents`' on that device), with the extra
    scorers that scored it and those skipped."""
    return generation_card(
        scorer.primary, scorer.networks, dataset_key, GENERATION_REFERENCE, scorer.reference_size,
        evaluation.num_samples, SAMPLER, evaluation.sampling_steps, evaluation.cfg_scales,
        evaluation.guidance_interval, timestep_shift=1.0, seed=seed, precision=sampling_precision(device),
        class_balancing="round-robin labels (i % num_classes)", extra_scorers=extras.card_text() if extras else "")


def sampling_noise(n: int, meta: LatentMeta, seed: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's sampling noise and class-balanced labels (the cheap tier scores their first samples)."""
    c, h, _ = meta.shape
    gen = torch.Generator().manual_seed(10_000 + seed)
    return torch.randn((n, c, h, h), generator=gen), torch.arange(n) % num_classes


def cfg_views(scores: dict[float, dict[str, float]], grid: list[float]) -> dict[str, float]:
    """{scale: scores} -> `gen/cfg<s>/*` for the swept grid, `gen/nocfg/*` (scale 1, sampled even when not in
    the grid), `gen/best/*` at the grid scale of lowest gFID, and `gen/best/cfg_scale`."""
    best = min(grid, key=lambda s: scores[s]["gfid"])
    views = {**{cfg_view(s): scores[s] for s in grid}, NO_CFG_VIEW: scores[NO_CFG], BEST_VIEW: scores[best]}
    metrics = {gen_key(view, name): value for view, values in views.items() for name, value in values.items()}
    metrics[BEST_CFG_SCALE] = best
    return metrics


def decode_standardised(decoder: Tokenizer, z: torch.Tensor, meta: LatentMeta, batch_size: int) -> torch.Tensor:
    """Standardised latents [N,C,H,W] -> de-standardised with the latents' own stats -> decoded [N,3,H,W] floats
    on the decoder's device."""
    device = next(decoder.parameters()).device
    with torch.no_grad():
        return torch.cat([decoder.decode(torch.from_numpy(meta.unstandardise(chunk.cpu().numpy())).to(device))
                          for chunk in z.split(batch_size)])


def sample_latents(model: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor, scale: float,
                   evaluation: EvaluationSpec, record_trajectory: bool = False,
                   variant: SamplerVariant | None = None) -> SampleResult:
    """The ODE every sample of a run comes from (the study's Euler steps, or the sampler check's `variant`): the
    backbone under `backbone_autocast` of its device (what the card's precision reports), the ODE state in
    float32."""
    method: SamplerMethod = "euler" if variant is None else variant.method
    steps = evaluation.sampling_steps if variant is None else variant.steps
    with backbone_autocast(noise.device):
        return ode_sample(model, noise, labels, steps=steps, cfg_scale=scale, method=method,
                          guidance_interval=evaluation.guidance_interval, record_trajectory=record_trajectory)


@torch.no_grad()
def sample_and_decode(model: torch.nn.Module, decoder: Tokenizer, noise: torch.Tensor, labels: torch.Tensor,
                       scale: float, evaluation: EvaluationSpec, meta: LatentMeta,
                       variant: SamplerVariant | None = None) -> np.ndarray:
    """Euler ODE in standardised latent space, de-standardise, decode; in batches. -> uint8 [N,3,H,W]."""
    chunks = []
    device = next(model.parameters()).device
    noise, labels = noise.to(device), labels.to(device)
    for i in range(0, len(noise), evaluation.batch_size):
        result = sample_latents(model, noise[i:i + evaluation.batch_size], labels[i:i + evaluation.batch_size],
                                scale, evaluation, variant=variant)
        chunks.append(to_uint8(decode_standardised(decoder, result.x1, meta, evaluation.batch_size)))
    return np.concatenate(chunks)


@torch.no_grad()
def trajectory_metrics(model: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor,
                        evaluation: EvaluationSpec) -> tuple[dict[str, float], np.ndarray]:
    """Straightness, efficiency and per-segment length ratios of the plain (unguided) ODE, METRICS.md §9.
    The ratios go to MLflow as the history of `traj/length_ratio` (step = segment), i.e. a curve per run."""
    n = evaluation.trajectory_samples
    device = next(model.parameters()).device
    result = sample_latents(model, noise[:n].to(device), labels[:n].to(device), NO_CFG, evaluation,
                            record_trajectory=True)
    traj = result.trajectory
    if traj is None:  # asked for with record_trajectory=True
        raise RuntimeError("the sampler returned no trajectory")
    scalars = {"traj/straightness": float(straightness(traj)), "traj/efficiency": float(efficiency(traj))}
    return scalars, torch.as_tensor(length_ratios(traj)).cpu().numpy()
