"""GPU-hours of a study's tokenizer trials, from counted FLOPs and CPU per-step costs measured on this repo's machine.

FLOP model of one training step, per image (E, D = encoder / decoder forward FLOPs, counted exactly with
torch's FlopCounterMode on meta tensors at the trial's real size; backward = 2x forward):
    3(E + D)                 encode, sample, decode, backward
  + 3D   (eq, lmr)           the re-decoded transformed / masked latent
  + 3(E + D) (mae)           the masked encode and its decode
  + 4V (if LPIPS)            VGG16 on x (forward) and on x̂ (forward + backward)
  + 9G (if GAN)              PatchGAN on x̂ for the generator (3G) and on x, x̂ for its own step (6G)
Feature networks of repa / vf and the projectors are left out (frozen forward passes, < 10% at paper sizes).

Measured: `CPU_MEASURED` (seconds per step and the counted FLOPs of that step, batch 2 at 32 px, baseline, one
torch thread on the shared 2-core dev machine; `measure_cpu_step` reproduces a row). They give the CPU's achieved
FLOP/s per architecture, and so the CPU-hours of a study. Assumed: the GPU's effective FLOP/s, `GPU_PEAK_FLOPS`
(H100 SXM dense BF16, datasheet) x `ASSUMED_MFU` (the fraction of peak a VAE step reaches with mixed precision).
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from raysweep.config.spec import StudySpec, TokenizerTrial
from raysweep.tokenizers import PatchGAN, build_regularizer, build_tokenizer

GPU_PEAK_FLOPS = 989e12  # assumed: NVIDIA H100 SXM, dense BF16
ASSUMED_MFU = 0.35  # assumed
EXTRA_DECODE = {"eq", "lmr"}
EXTRA_ENCODE_DECODE = {"mae"}
# measured 2026-11-23 with measure_cpu_step (1 thread, nice 19, machine shared with 7 other jobs): architecture ->
# (seconds per step, FLOPs of that step). At batch 2 the ViTs' AdamW update over 10^7-10^8 weights dominates, so
# their achieved FLOP/s (and the CPU-hours derived from it) are pessimistic.
CPU_MEASURED: dict[str, tuple[float, float]] = {
    "conv-tiny": (0.349, 9.19e8), "conv-small": (2.05, 1.082e10), "conv-ldm": (6.39, 3.624e10),
    "vit-tiny": (0.0789, 1.455e7), "vit-small": (0.935, 1.051e9), "vit-base": (6.73, 8.221e9),
}


def _flops(fn: Any) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


@lru_cache(maxsize=64)
def pass_flops(architecture: str, latent: str, image_size: int) -> tuple[float, float]:
    """(encoder, decoder) forward FLOPs for one image, counted on meta tensors (no memory, no compute)."""
    with torch.device("meta"):
        model = build_tokenizer(architecture, latent, image_size)
        x = torch.empty(1, 3, image_size, image_size)
        z = model.encode(x).mean
        return _flops(lambda: model.encode(x)), _flops(lambda: model.decode(z))


@lru_cache(maxsize=8)
def _side_flops(image_size: int) -> tuple[float, float]:
    """(VGG16 features, PatchGAN) forward FLOPs for one image; VGG counted at 224 px and scaled by the pixel count
    (its five max-pools need >= 32 px; conv FLOPs are proportional to H·W)."""
    from torchvision.models import vgg16

    with torch.device("meta"):
        x, x224 = torch.empty(1, 3, image_size, image_size), torch.empty(1, 3, 224, 224)
        vgg, disc = vgg16().features, PatchGAN(image_size)
        return _flops(lambda: vgg(x224)) * (image_size / 224) ** 2, _flops(lambda: disc(x))


def step_flops(trial: TokenizerTrial, image_size: int, lpips: bool, gan: bool) -> float:
    """FLOPs of one training step of `trial` at its batch size (the model in the module docstring)."""
    e, d = pass_flops(trial.architecture, trial.latent, image_size)
    v, g = _side_flops(image_size)
    per_image = 3 * (e + d) + 3 * d * (trial.regularizer in EXTRA_DECODE)
    per_image += 3 * (e + d) * (trial.regularizer in EXTRA_ENCODE_DECODE) + 4 * v * lpips + 9 * g * gan
    return per_image * trial.batch_size


def measure_cpu_step(architecture: str, latent: str = "f16d32", image_size: int = 32, batch: int = 2,
                     steps: int = 3) -> tuple[float, float]:
    """(median seconds per baseline training step after one warm-up, counted FLOPs of that step) on this CPU."""
    from raysweep.tokenizers import TokenizerTrainer

    torch.manual_seed(0)
    trainer = TokenizerTrainer(build_tokenizer(architecture, latent, image_size), build_regularizer("baseline"),
                               batch_size=batch)
    x = torch.rand(batch, 3, image_size, image_size) * 2 - 1
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        trainer.train_step(x)
        times.append(time.perf_counter() - start)
    trial = TokenizerTrial(architecture=architecture, latent=latent, batch_size=batch)
    return sorted(times[1:])[len(times[1:]) // 2], step_flops(trial, image_size, lpips=False, gan=False)


def estimate_gpu_hours(study: StudySpec, lpips: bool = True, gan: bool = True) -> dict[str, Any]:
    """Per-trial and per-family GPU-hours (assumed GPU throughput) and CPU-hours (measured CPU throughput)."""
    size = study.dataset.image_size
    gpu_flops = GPU_PEAK_FLOPS * ASSUMED_MFU
    trials, families = [], {}
    for t in study.tokenizer_trials:
        flops = step_flops(t, size, lpips, gan) * t.steps
        cpu_s, cpu_f = CPU_MEASURED[t.architecture]
        row = {"id": t.id, "family": t.tags()["family"], "flops": flops, "gpu_hours": flops / gpu_flops / 3600,
               "cpu_hours": flops * cpu_s / cpu_f / 3600}
        trials.append(row)
        families[row["family"]] = families.get(row["family"], 0.0) + row["gpu_hours"]
    return {"tokenizer_gpu_hours": sum(r["gpu_hours"] for r in trials), "by_family": families, "trials": trials,
            "assumed": {"gpu_peak_flops": GPU_PEAK_FLOPS, "mfu": ASSUMED_MFU, "lpips": lpips, "gan": gan},
            "measured": {arch: {"cpu_s_per_step": s, "cpu_flops_per_s": f / s}
                         for arch, (s, f) in CPU_MEASURED.items()}}
