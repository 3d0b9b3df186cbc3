"""GPU-hours of a whole study, stage by stage, from FLOPs counted exactly (`flops.py`) and throughputs that are
either measured here on the CPU or assumed for the GPU.

FLOP models (E, D: tokenizer encoder / decoder forward per image; V: LPIPS's VGG16; G: PatchGAN; S: the scoring
network, the FID Inception; F: one backbone velocity evaluation per latent; backward = 2x forward):
  tokenizer_training    per step and image: 3(E+D), + 3D per extra decode of the regularizer (its class's
                        `extra_decodes`: eq, lmr re-decode a latent), + 3(E+D) per `extra_encode_decodes` (mae's
                        masked pass), + 4V with LPIPS (x, and x̂ with backward), + 9G after gan_start
                        (generator 3G, discriminator 6G)
  tokenizer_evaluation  encode train + val (E), reconstruct val (E + D), rFID features of the reconstructions (S)
  reference             features of the real train and val images (S), once per study
  latent_metrics        CPU only (the study's metric pool): measured seconds per latent (`LATENT_METRIC_CPU_S`)
  diffusion_training    per step and latent: 3F
  sampling              per sample: sampling_steps x F for CFG scale 1 (always sampled) and 2F per step inside the
                        guidance interval (F outside) for every scale > 1; + the unguided trajectory samples
  sample_scoring        per sample and CFG scale: decode D and gFID / IS features S
Not counted: the frozen feature networks of repa / vf (< 10% of a paper-size step), optimizer and EMA updates,
norms and element-wise ops, the domain network's training, model-dependent metrics (listed in `not_estimated`).

GPU seconds = FLOPs / (peak x `ASSUMED_MFU`), with the peak of the precision the code runs each stage at
(`STAGE_PRECISION`): bf16 where it autocasts; elsewhere fp32, whose convolutions cuDNN runs on TF32 tensor cores
and whose matmuls run in full fp32 under torch's defaults (read from torch.backends at estimate time).
CPU seconds = FLOPs / the FLOP rate measured here (`CPU_MEASURED`), per network family: compute only. Ray, MLflow,
checkpoints, data loading and the per-step Python overhead of tiny models are not in it; on the quickstart they are
most of the wall time (estimate 0.05 CPU-hours = 3 min of compute; measured 12.6 min wall on 2 cores).
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from raysweep.config.plan import (
    ConfirmationSlot,
    Job,
    JobRef,
    LatentMetricJob,
    StudyPlan,
    TokenizerJob,
    TokenizerSearchJob,
)
from raysweep.config.spec import DiffusionTrial, StudySpec, TokenizerTrial
from raysweep.estimate.flops import (
    GPU_PEAKS,
    ZERO,
    Flops,
    backbone_flops,
    patchgan_flops,
    peak_seconds,
    scoring_flops,
    tokenizer_flops,
    vgg_flops,
)
from raysweep.tokenizers import parse_latent_config
from raysweep.tokenizers.regularizers import regularizer_class

Precision = Literal["bf16", "fp32"]
GPU = "NVIDIA H100 SXM"
GPU_PEAK_FLOPS = GPU_PEAKS[GPU]  # assumed: the datasheet's dense peaks
ASSUMED_MFU = 0.35  # assumed: the fraction of peak a step reaches
# The precision each stage runs at on CUDA, as the code stands: tokenizer training and the backbone (training and
# sampling) run under bf16 autocast (diffusion/precision.py; TokenizerTrainer keeps its posterior, regularizer loss
# and discriminator update float32, booked at bf16 too: a few % of its FLOPs); decoding and features stay float32.
STAGE_PRECISION: dict[str, Precision] = {"tokenizer_training": "bf16", "tokenizer_evaluation": "fp32",
                                         "reference": "fp32", "diffusion_training": "bf16", "sampling": "bf16",
                                         "sample_scoring": "fp32"}
MEASURED_ON = ("the 2-core dev machine (AMD EPYC), 1 torch thread, the measuring process at top priority "
               "(autogroup -20) on a machine shared with other jobs; bare training steps, no Ray / MLflow / I/O")
# measured 2026-11-30 with measure_tokenizer_step / measure_diffusion_step: network -> (seconds per training step,
# counted FLOPs of that step). Tokenizers: baseline, f2d4 at 16 px (the quickstart's shape), batch 32 for the -tiny
# presets and 8 for the others. Backbones: batch 64 of 4x8x8 latents, patch 2 (the quickstart's), their recipe.
CPU_MEASURED: dict[str, tuple[float, float]] = {
    "conv-tiny": (0.0277, 2.919e9), "conv-small": (0.0856, 1.193e10), "conv-ldm": (0.155, 2.917e10),
    "vit-tiny": (0.0548, 2.847e9), "vit-small": (1.149, 6.708e10), "vit-base": (7.32, 5.292e11),
    "SiT-T": (0.0307, 1.320e9), "LightningDiT-T": (0.0348, 1.316e9),
}
REFERENCE_CPU_PROXY = "conv-ldm"  # the measured conv network whose FLOP rate stands for the scoring network's
# measured 2026-11-30 with measure_latent_metrics (as above): seconds per latent of 32x16x16 (8,192 values) for one
# accumulator update and its batch check (batch 256); other shapes scale by their value count (assumed). Finalize /
# merge are not included.
LATENT_METRIC_VALUES = 32 * 16 * 16
LATENT_METRIC_CPU_S: dict[str, float] = {
    "viv": 1.2e-5, "sec": 4.0e-5, "lnc": 1.2e-5, "linear_probe": 1.3e-5, "spatial": 1.2e-5, "uniformity": 1.2e-5,
    "viv_mixture": 1.2e-5, "fisher": 1.3e-5,
}


def gpu_seconds(flops: Flops, precision: Precision) -> float:
    """Seconds on the assumed GPU for `flops` run at `precision` (fp32: TF32 where torch enables it)."""
    return peak_seconds(flops, precision, GPU_PEAK_FLOPS) / ASSUMED_MFU


def cpu_flops_per_s(network: str) -> float:
    """Measured FLOP rate of `network`'s family on this CPU: tokenizer presets their own, backbones their `-T`."""
    name = network if network in CPU_MEASURED else f"{network.split('-')[0]}-T"
    seconds, flops = CPU_MEASURED[name]
    return flops / seconds


@dataclass
class Stage:
    """A stage's running totals; `add` books FLOPs run by one network family."""

    precision: Precision | None
    flops: Flops = ZERO
    gpu_s: float = 0.0
    cpu_s: float = 0.0
    groups: dict[str, float] = field(default_factory=dict)  # GPU-hours by family / backbone

    def add(self, flops: Flops, cpu_rate: float, group: str | None = None) -> float:
        gpu_s = gpu_seconds(flops, self.precision) if self.precision else 0.0
        self.flops, self.gpu_s, self.cpu_s = self.flops + flops, self.gpu_s + gpu_s, self.cpu_s + flops.total / cpu_rate
        if group is not None:
            self.groups[group] = self.groups.get(group, 0.0) + gpu_s / 3600
        return gpu_s / 3600

    def summary(self) -> dict[str, Any]:
        return {"gpu_hours": self.gpu_s / 3600, "cpu_hours": self.cpu_s / 3600, "flops": self.flops.total,
                "flops_conv": self.flops.conv, "flops_matmul": self.flops.matmul, "precision": self.precision,
                **({"by_group": self.groups} if self.groups else {})}


def step_flops(trial: TokenizerTrial, image_size: int, gan_on: bool) -> Flops:
    """FLOPs of one tokenizer training step at the trial's batch size (the model in the module docstring)."""
    e, d = tokenizer_flops(trial.architecture, trial.latent, image_size)
    reg = regularizer_class(trial.regularizer)
    per_image = 3 * (e + d) + 3 * d * reg.extra_decodes + 3 * (e + d) * reg.extra_encode_decodes
    per_image += 4 * vgg_flops(image_size) if trial.perceptual_weight > 0 else ZERO
    per_image += 9 * patchgan_flops(image_size, trial.gan_channels) if gan_on and trial.gan_weight > 0 else ZERO
    return per_image * trial.batch_size


def training_flops(trial: TokenizerTrial, image_size: int) -> Flops:
    """All steps of a tokenizer trial; the GAN terms only from `gan_start` on."""
    gan_steps = max(0, trial.steps - trial.gan_start)
    return (step_flops(trial, image_size, False) * (trial.steps - gan_steps)
            + step_flops(trial, image_size, True) * gan_steps)


def guided_passes(study: StudySpec) -> float:
    """Velocity evaluations per generated sample over the CFG sweep, scale 1 included (it is always sampled)."""
    ev = study.evaluation
    grid = [i / ev.sampling_steps for i in range(ev.sampling_steps)]
    lo, hi = ev.guidance_interval or (0.0, 1.0)
    inside = sum(lo <= t <= hi for t in grid)
    return sum(ev.sampling_steps + (inside if s != 1.0 else 0) for s in sorted({1.0, *ev.cfg_scales}))


def _book_diffusion(study: StudySpec, tok: TokenizerTrial, dif: DiffusionTrial, stages: dict[str, Stage]) -> float:
    """Book one diffusion run (training, sampling, scoring); returns its GPU-hours."""
    ds, ev = study.dataset, study.evaluation
    f = backbone_flops(dif.backbone, tok.latent, ds.image_size, ds.num_classes, dif.patch_size)
    _, d = tokenizer_flops(tok.architecture, tok.latent, ds.image_size)
    s = scoring_flops(study.reference.feature_network, ds.image_size, ds.num_classes)
    scales = len({1.0, *ev.cfg_scales})
    bb_rate, tok_rate = cpu_flops_per_s(dif.backbone), cpu_flops_per_s(tok.architecture)
    passes = ev.num_samples * guided_passes(study) + ev.trajectory_samples * ev.sampling_steps
    return (stages["diffusion_training"].add(3 * f * (dif.steps * dif.batch_size), bb_rate, dif.backbone)
            + stages["sampling"].add(f * passes, bb_rate, dif.backbone)
            + stages["sample_scoring"].add((d + s) * (ev.num_samples * scales), tok_rate, dif.backbone))


def _latent_metric_seconds(study: StudySpec, trial: TokenizerTrial) -> float:
    c, h, w = parse_latent_config(trial.latent).latent_shape(study.dataset.image_size)
    per_latent = sum(LATENT_METRIC_CPU_S.get(n, 0.0) for n in study.metrics.names)
    return per_latent * (c * h * w / LATENT_METRIC_VALUES) * study.dataset.val_size


@dataclass
class Priced:
    """A plan priced job by job: the stages' totals and each job's hours (`job_hours`)."""

    stages: dict[str, Stage]
    tokenizers: list[dict[str, Any]]
    jobs: dict[JobRef, float]  # GPU-hours of trials, CPU-hours of latent-metric jobs; jobs not estimated: absent
    priced: int  # tokenizers priced (a search not yet run: its trials)


def price(study: StudySpec, plan: StudyPlan) -> Priced:
    """Book every job of `plan` into its stages (the module docstring's FLOP models)."""
    ds = study.dataset
    n_train, n_val = ds.train_size, ds.val_size
    stages = {name: Stage(precision) for name, precision in STAGE_PRECISION.items()}
    stages["latent_metrics"] = Stage(None)
    s = scoring_flops(study.reference.feature_network, ds.image_size, ds.num_classes)
    stages["reference"].add(s * (n_train + n_val), cpu_flops_per_s(REFERENCE_CPU_PROXY))
    tokenizers: list[dict[str, Any]] = []
    jobs: dict[JobRef, float] = {}
    priced = [(job.ref, job.trial) for job in plan.tokenizers]
    search = plan.search
    if search is not None and not priced:  # a search not yet run: its trials priced at the block's first draw
        priced = [(search.ref, search.trial)] * search.spec.num_samples
    for ref, t in priced:
        rate, family = cpu_flops_per_s(t.architecture), t.tags()["family"]
        flops = training_flops(t, ds.image_size)
        gpu_h = stages["tokenizer_training"].add(flops, rate, family)
        tokenizers.append({"id": ref[1] if ref[0] != TokenizerSearchJob.stage else f"{ref[1]}/{len(tokenizers)}",
                           "family": family, "flops": flops.total, "gpu_hours": gpu_h,
                           "cpu_hours": flops.total / rate / 3600})
        e, d = tokenizer_flops(t.architecture, t.latent, ds.image_size)
        gpu_h += stages["tokenizer_evaluation"].add(e * (n_train + n_val) + (e + d + s) * n_val, rate, family)
        jobs[ref] = jobs.get(ref, 0.0) + gpu_h
        metric_s = _latent_metric_seconds(study, t)
        stages["latent_metrics"].cpu_s += metric_s
        if ref[0] == TokenizerJob.stage:
            jobs[(LatentMetricJob.stage, ref[1])] = metric_s / 3600
    for run in plan.diffusion:
        jobs[run.ref] = _book_diffusion(study, run.tokenizer.trial, run.trial, stages)
    for slot in plan.of(ConfirmationSlot):  # diffusion trials of tokenizers the search has not found yet
        jobs[slot.ref] = _book_diffusion(study, search.trial, slot.trial, stages)  # type: ignore[union-attr]
    return Priced(stages, tokenizers, jobs, len(priced))


def job_hours(study: StudySpec, plan: StudyPlan) -> dict[JobRef, float]:
    """Each job's estimated hours, the scheduler's cost: GPU-hours of a tokenizer (training and evaluation) and of a
    diffusion run (training, sampling, scoring), the same figures `estimate_gpu_hours` (`raysweep plan --json`)
    sums; CPU-hours of a latent-metric job; a search job its trials together. Jobs not estimated are absent."""
    return price(study, plan).jobs


def job_cost(study: StudySpec, plan: StudyPlan) -> Callable[[Job], float]:
    """The scheduler's cost of a job of `plan`: its `job_hours` (0 for a job not estimated: model and diffusion
    metrics, the analysis), so a LightningDiT-XL run (100k steps at batch 1024) ranks above a SiT-B run (400k at
    256), as their GPU-hours do and their step counts do not."""
    hours = job_hours(study, plan)
    return lambda job: hours.get(job.ref, 0.0)


def estimate_gpu_hours(study: StudySpec, plan: StudyPlan | None = None) -> dict[str, Any]:
    """Per-stage and total GPU-hours (assumed GPU throughput) and CPU-hours (measured CPU throughput) of `study`
    (`plan`: its plan where the caller has built it; else built here)."""
    from raysweep.engine.study_plan import plan_study

    ds = study.dataset
    n_train, n_val = ds.train_size, ds.val_size
    plan = plan or plan_study(study)
    priced = price(study, plan)
    stages, tokenizers = priced.stages, priced.tokenizers
    slots = plan.of(ConfirmationSlot)
    by_stage = {name: stage.summary() for name, stage in stages.items()}
    return {
        "gpu_hours": sum(v["gpu_hours"] for v in by_stage.values()),
        "cpu_hours": sum(v["cpu_hours"] for v in by_stage.values()),
        "stages": by_stage,
        "tokenizers": tokenizers,
        "counts": {"tokenizers": priced.priced, "diffusion_trials": len(plan.diffusion) + len(slots),
                   "diffusion_trials_by_backbone": dict(Counter(j.trial.backbone
                                                                for j in (*plan.diffusion, *slots))),
                   "train_images": n_train, "val_images": n_val,
                   "velocity_evaluations_per_sample": guided_passes(study)},
        "measured": {"where": f"CPU: {MEASURED_ON}",
                     "cpu_s_per_step": {k: s for k, (s, _) in CPU_MEASURED.items()},
                     "cpu_flops_per_s": {k: cpu_flops_per_s(k) for k in CPU_MEASURED},
                     "latent_metric_cpu_s_per_latent": LATENT_METRIC_CPU_S,
                     "flops": "counted exactly (torch FlopCounterMode on meta tensors) at the study's sizes"},
        "assumed": {"gpu": GPU, "gpu_peak_flops": GPU_PEAK_FLOPS, "mfu": ASSUMED_MFU,
                    "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                    "matmul_tf32": torch.backends.cuda.matmul.allow_tf32, "stage_precision": STAGE_PRECISION,
                    "images": "dataset.train_size / val_size (an upper bound for imagefolder)",
                    "latent_metric_scaling": "linear in the latent's value count"},
        "not_estimated": sorted({n for n in study.metrics.names if n not in LATENT_METRIC_CPU_S}
                                | {"repa/vf feature networks", "optimizer and EMA updates"}),
    }


def _median_step_seconds(step: Any, steps: int) -> float:
    times = []
    for _ in range(steps + 1):  # the first is a warm-up
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def measure_tokenizer_step(architecture: str, latent: str = "f2d4", image_size: int = 16, batch: int = 32,
                           steps: int = 3) -> tuple[float, float]:
    """(median seconds per baseline training step, its counted FLOPs) on this CPU: a `CPU_MEASURED` row."""
    from raysweep.tokenizers import TokenizerTrainer, build_regularizer, build_tokenizer

    torch.manual_seed(0)
    trainer = TokenizerTrainer(build_tokenizer(architecture, latent, image_size), build_regularizer("baseline"),
                               batch_size=batch)
    x = torch.rand(batch, 3, image_size, image_size) * 2 - 1
    trial = TokenizerTrial(architecture=architecture, latent=latent, batch_size=batch)
    return _median_step_seconds(lambda: trainer.train_step(x), steps), step_flops(trial, image_size, False).total


def measure_diffusion_step(backbone: str, latent: str = "f2d4", image_size: int = 16, batch: int = 64,
                           patch_size: int = 2, steps: int = 3) -> tuple[float, float]:
    """(median seconds per training step with the preset's recipe, its counted FLOPs) on this CPU."""
    from raysweep.diffusion.backbones import build_backbone, recipe_for
    from raysweep.diffusion.train import DiffusionTrainer

    torch.manual_seed(0)
    c, h, w = parse_latent_config(latent).latent_shape(image_size)
    trainer = DiffusionTrainer(build_backbone(backbone, c, h, 10, patch_size),
                               **recipe_for(backbone).trainer_kwargs())
    x, y = torch.randn(batch, c, h, w), torch.arange(batch) % 10
    f = backbone_flops(backbone, latent, image_size, 10, patch_size)
    return _median_step_seconds(lambda: trainer.train_step(x, y), steps), 3 * f.total * batch


def measure_latent_metrics(names: list[str], shape: tuple[int, int, int] = (32, 16, 16),
                           batch: int = 256) -> dict[str, float]:
    """Seconds per latent of one accumulator update per metric on random latents: `LATENT_METRIC_CPU_S`."""
    import numpy as np

    from raysweep.data.latents import LatentBatch
    from raysweep.metrics import MetricSet

    rng = np.random.default_rng(0)
    latents = LatentBatch(np.arange(batch, dtype=np.int64), (np.arange(batch) % 10).astype(np.int32),
                          rng.standard_normal((batch, *shape)).astype(np.float32),
                          (rng.random((batch, *shape[1:])) > 0.5).astype(np.uint8))
    out = {}
    for name in names:
        metrics = MetricSet([name])
        out[name] = _median_step_seconds(lambda: metrics.update(metrics.init(), latents), 2) / batch
    return out
