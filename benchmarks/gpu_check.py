"""One command that exercises every CUDA path of raysweep on one GPU and prints ONE JSON object (issue 18).

    python benchmarks/gpu_check.py              # one H200 with 16 CPU cores: about 8 min at most
    python benchmarks/gpu_check.py --dry        # the same code at tiny sizes on the CPU (the test suite runs it)

Sections of the JSON (ratios are from the same run, so other load hits both sides alike):
  device         the `nvidia-smi` line (or "cpu (dry run)"), torch, Ray;
  sit_train      SiT-B/2 bf16 training (`diffusion_bench.train_throughput`: DiffusionTrainer.fit as a trial runs it
                 vs a bare PyTorch loop), without and with torch.compile: steps/s, trainer/bare ratio (target
                 >= 0.95) and MFU = steps/s x 3 x forward FLOPs (`pipeline/flops.py`) x batch / bf16 peak
                 (target >= 35%);
  cfg_sampling   samples/s of the stage's `sample_latents` (bf16 backbone, Euler ODE, CFG on every step);
  tokenizer_step seconds per TokenizerTrainer step with LPIPS-free eq. 12 (L1 + KL + GAN), bf16 vs float32;
  micro_study    a whole study (reference net, a tokenizer, latent + model metrics: equivariance, distortion, iFID,
                 a diffusion trial with sampling and scoring) with fractional GPUs per trial: seconds per stage
                 and the model metrics' values;
  metric_pool    Ray Data metric-stage streaming throughput at 1, 2, 4, 8 actors (target 8 / 1 >= 6x);
  ddp            a 2-worker data-parallel trial (Ray Train, `pipeline/data_parallel.py`) against one process on
                 the same global batch; on one device both workers share it (gloo), so the ratio is the
                 single-device overhead, not the 2-GPU speed-up (target there >= 1.8x).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusion_bench import Setup, sample_throughput, timed, train_throughput
from metrics_bench import ray_stage, synthetic_latents

from raysweep.pipeline.estimate import GPU_PEAK_FLOPS
from raysweep.pipeline.flops import backbone_flops

ACTORS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Sizes:
    """What each section runs at: the GPU check, or `--dry` on the CPU."""

    device: str
    backbone: str
    latent: str  # tokenizer latent config whose shape the backbone trains on
    image_size: int
    batch_size: int
    steps: int
    repeats: int
    samples: int
    tokenizer: str
    tokenizer_batch: int
    pool_latents: int
    study_gpu: float  # GPUs per trial in the micro study
    compile: bool  # also time the torch.compile variant (inductor's C++ build takes many minutes on a small CPU)

    @property
    def shape(self) -> tuple[int, int, int]:
        from raysweep.tokenizers import parse_latent_config

        return parse_latent_config(self.latent).latent_shape(self.image_size)


GPU = Sizes("cuda", "SiT-B", "f16d32", 256, 256, 50, 3, 256, "conv-f16d32", 32, 20_000, 0.25, True)
DRY = Sizes("cpu", "SiT-T", "f2d4", 16, 16, 3, 1, 8, "conv-tiny", 8, 400, 0.0, False)


def nvidia_smi() -> str:
    if shutil.which("nvidia-smi") is None:
        return "cpu (dry run)"
    query = "--query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm"
    return subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True,
                          check=True).stdout.strip()


def sit_train(s: Sizes) -> dict[str, Any]:
    """Trainer vs bare loop, eager and compiled, with MFU against the bf16 peak the estimate assumes."""
    flops = 3 * backbone_flops(s.backbone, s.latent, s.image_size, 10, 2).total * s.batch_size
    out: dict[str, Any] = {"preset": f"{s.backbone}/2", "latent": s.shape, "batch_size": s.batch_size,
                           "flops_per_step": flops, "peak_flops": GPU_PEAK_FLOPS["bf16"]}
    out["compiled"] = "not run: --dry (compile is checked on the GPU)"
    for name, compiled in (("eager", False), ("compiled", True))[:2 if s.compile else 1]:
        setup = Setup(torch.device(s.device), s.shape, s.batch_size, s.steps, s.repeats, compile=compiled)
        r = train_throughput(s.backbone, setup)
        out[name] = {"trainer_step_s": 1 / r["trainer_steps_s"], "bare_step_s": 1 / r["plain_steps_s"],
                     "trainer_over_bare": r["ratio_median"],
                     "mfu": r["trainer_steps_s"] * flops / GPU_PEAK_FLOPS["bf16"],
                     "bare_mfu": r["plain_steps_s"] * flops / GPU_PEAK_FLOPS["bf16"]}
    return out


def cfg_sampling(s: Sizes) -> dict[str, Any]:
    setup = Setup(torch.device(s.device), s.shape, s.batch_size, s.steps, s.repeats)
    return {"samples_s": sample_throughput(s.backbone, setup, s.samples, steps=50, cfg_scale=1.5),
            "sampling_steps": 50, "cfg_scale": 1.5, "autocast": "bf16" if s.device == "cuda" else "none"}


def tokenizer_step(s: Sizes) -> dict[str, Any]:
    """One warm-up step, then `steps` timed steps, for a bf16 and a float32 trainer on the same batch."""
    from raysweep.tokenizers import GanConfig, TokenizerTrainer, build_regularizer, build_tokenizer

    x = (torch.rand(s.tokenizer_batch, 3, s.image_size, s.image_size) * 2 - 1).to(s.device)
    out: dict[str, Any] = {"architecture": s.tokenizer, "batch_size": s.tokenizer_batch}
    for name, mixed in (("bf16", True), ("fp32", False)):
        torch.manual_seed(0)
        model = build_tokenizer(s.tokenizer, s.latent, s.image_size).to(s.device)
        trainer = TokenizerTrainer(model, build_regularizer("baseline"), batch_size=s.tokenizer_batch,
                                   gan=GanConfig(start=0), mixed_precision=mixed)

        def run(n: int, trainer: TokenizerTrainer = trainer) -> None:
            for _ in range(n):
                trainer.train_step(x)

        run(1)
        out[f"{name}_step_s"] = 1 / timed(run, s.steps, torch.device(s.device))[0]
    out["fp32_over_bf16"] = out["fp32_step_s"] / out["bf16_step_s"]
    return out


def micro_study(s: Sizes, root: Path) -> dict[str, Any]:
    """A whole study with `study_gpu` GPUs per trial; the model metrics run in its model-metric stage."""
    from raysweep.config import parse_study
    from raysweep.pipeline.runner import run_study
    from raysweep.tracking import STAGE_TAG, Tracker

    gpu = {"cpu": 1, "gpu": s.study_gpu}
    study = parse_study({
        "name": "gpu-check",
        "dataset": {"name": "shapes", "image_size": 16, "num_classes": 4, "train_size": 128, "val_size": 64},
        "reference": {"train_steps": 10, "batch_size": 32},
        "tokenizers": {"architecture": "conv-tiny", "latent": "f2d4", "steps": 10, "batch_size": 16,
                       "variants": [{"regularizer": "baseline"}]},
        "diffusion": {"backbone": "SiT-T", "steps": 10, "batch_size": 32, "seeds": [0]},
        "evaluation": {"sampling_steps": 4, "cfg_scales": [1.0, 2.0], "num_samples": 64, "trajectory_samples": 8},
        "metrics": {"names": ["viv", "equivariance", "distortion", "ifid"], "actors": 1, "batch_size": 32},
        "resources": {"tokenizer": gpu, "diffusion": gpu, "metric_actor": gpu},
        "storage": {"root": str(root / "study")},
    })
    t0 = time.perf_counter()
    result = run_study(study, analyze=False)
    runs = Tracker(study.tracking_uri, study.experiment_name).runs()
    tokenizer = [Tracker.metrics_of(r) for r in runs if r.data.tags.get(STAGE_TAG) == "tokenizer"]
    model_metrics = {k: v for k, v in tokenizer[0].items() if any(n in k for n in ("equivariance", "distortion",
                                                                                    "ifid"))}
    return {"gpu_per_trial": s.study_gpu, "seconds": time.perf_counter() - t0, "failed": len(result.failed),
            "stage_seconds": result.seconds, "model_metrics": model_metrics}


def metric_pool(s: Sizes, root: Path) -> dict[str, Any]:
    from raysweep.data import write_latents

    latents, labels, _ = synthetic_latents(s.pool_latents, (32, 16, 16), 10)
    directory = root / "pool"
    write_latents(directory, latents, labels, tokenizer_id="gpu-check", rows_per_file=max(1, s.pool_latents // 32))
    ray_stage(directory, 1, 256, False)  # warm-up: worker start-up and imports are not throughput
    cpu = torch.device("cpu")
    seconds = {n: 1 / timed(lambda _, n=n: ray_stage(directory, n, 256, False), 1, cpu)[0] for n in ACTORS}
    out: dict[str, Any] = {f"latents_s_{n}": s.pool_latents / t for n, t in seconds.items()}
    out["speedup_8_over_1"] = seconds[1] / seconds[8]
    return out


def ddp(s: Sizes, root: Path) -> dict[str, Any]:
    """Steps/s of one process vs a 2-worker data-parallel Tune trial, both on the same global batch."""
    from ray import tune

    from raysweep.pipeline.data_parallel import Scaling, launch

    cuda = s.device == "cuda"
    single = _ddp_steps_s({"out": "", "sizes": s})
    config = {"out": str(root / "ddp.json"), "sizes": s}
    trainable = tune.with_parameters(launch, stage_fn=_ddp_trial,
                                     scaling=Scaling(2, 2.0, 0.5 if cuda else 0.0, backend="gloo"))
    tune.Tuner(tune.with_resources(trainable, {"cpu": 0.01}), param_space=config,
               run_config=tune.RunConfig(storage_path=str(root / "tune"), name="ddp", verbose=0)).fit()
    two = json.loads((root / "ddp.json").read_text())["steps_s"]
    return {"workers": 2, "devices": 1 if cuda else 0, "backend": "gloo", "single_steps_s": single,
            "two_worker_steps_s": two, "two_over_single": two / single}


def _ddp_steps_s(config: dict[str, Any]) -> float:
    from raysweep.diffusion import DiffusionTrainer, build_backbone
    from raysweep.pipeline.data_parallel import current_shard

    s: Sizes = config["sizes"]
    device = torch.device(s.device)  # in a Train worker: the GPU Ray Train made current
    torch.manual_seed(0)
    c, h, _ = s.shape
    model = build_backbone(s.backbone, in_channels=c, input_size=h, num_classes=10).to(device)
    trainer = DiffusionTrainer(model, lr=1e-4, shard=current_shard())
    z, y = torch.randn(1024, *s.shape, device=device), torch.arange(1024, device=device) % 10
    trainer.fit(z, y, 2, s.batch_size)  # warm-up
    return timed(lambda n: trainer.fit(z, y, n, s.batch_size), s.steps, device)[0]


def _ddp_trial(config: dict[str, Any]) -> None:
    """The data-parallel trial: each worker times its steps, rank 0 writes the rate; the launcher's closing call
    (outside the workers) reports it to Tune."""
    from ray import train, tune

    from raysweep.pipeline.data_parallel import in_train_worker, is_chief

    out = Path(config["out"])
    if not in_train_worker():
        tune.report(json.loads(out.read_text()))
        return
    rate = _ddp_steps_s(config)
    if is_chief():
        out.write_text(json.dumps({"steps_s": rate}))
    train.report({"steps_s": rate})


def finite(value: Any) -> bool:
    """Every number in a nested result is finite (what the dry-run test checks)."""
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="tiny sizes on the CPU")
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # the study's progress: stdout carries the JSON alone
        result = run(args.dry)
    print(json.dumps(result))


def run(dry: bool) -> dict[str, Any]:
    import ray

    s = DRY if dry else GPU
    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; use --dry on a CPU machine")
    t0 = time.perf_counter()
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry": dry,
                              "device": nvidia_smi(), "torch": torch.__version__, "ray": ray.__version__}
    result["sit_train"] = sit_train(s)
    result["cfg_sampling"] = cfg_sampling(s)
    result["tokenizer_step"] = tokenizer_step(s)
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(address="local", num_cpus=8 if dry else 16, include_dashboard=False, log_to_driver=False)
        try:
            result["micro_study"] = micro_study(s, Path(tmp))
            result["metric_pool"] = metric_pool(s, Path(tmp))
            result["ddp"] = ddp(s, Path(tmp))
        finally:
            ray.shutdown()
    result["seconds"] = time.perf_counter() - t0
    return result


if __name__ == "__main__":
    main()
