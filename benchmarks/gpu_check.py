"""The first thing to run on a GPU machine: raysweep's CUDA paths at paper scale, one JSON line per section.

    python benchmarks/gpu_check.py                  # one GPU; sized for <= 4 min on one H100 (predicted, see below)
    python benchmarks/gpu_check.py --budget-s 120   # sections that would start after 120 s print a skip line
    python benchmarks/gpu_check.py --ray            # also the Ray sections (needs ray, mlflow, pydantic)
    python benchmarks/gpu_check.py --dry            # every section at toy size on the CPU, no torch.compile

It needs only torch (>= 2.11), numpy, scipy, pyarrow, pyyaml, timm (and torchvision, which timm installs): nothing
here or in the raysweep modules it imports pulls in ray, mlflow, pydantic, optuna or torch-fidelity, so it runs on a
bare GPU box with the source tree. Each section prints one JSON line to stdout and flushes as it ends, in its own
try/except (a failure prints {"section", "error"} and the next section runs), so a crash or a timeout keeps what was
done. Every line carries "mfu": achieved FLOP/s over the device's dense datasheet peak (`estimate/flops.py`
GPU_PEAKS, looked up by device name; an unknown GPU gives null and says so; null on the CPU). FLOPs per step are
counted (torch FlopCounterMode) on the warm-up of the very config that is timed (its patch size and token count),
forward and backward.

Sections:
  device            GPU name, the peak table row used, torch version;
  diffusion_train   SiT-B/1 and LightningDiT-B/1 (Table 1's patch 1: 256 tokens) on f16d32 latents at 256 px
                    (32x16x16), `DiffusionTrainer.fit` with the preset's Table 2 recipe, bf16 autocast; eager and
                    torch.compile, one line each;
  sampling          samples/s of the Euler ODE (50 steps, CFG 1.5 on every step) as the diffusion stage samples;
  tokenizer_train   conv-ldm f16d32 at 256 px (Table 1's tokenizer), `TokenizerTrainer.train_step` under bf16
                    with the GAN on (eq. 12 without LPIPS: its weights are not on a bare box), baseline regularizer;
  fd_features       FD feature extraction: torchvision's Inception-v3 at 299 px (the gFID network's layers) and
                    timm's DINOv2 ViT-L/14 at 224 px (FD_DINOv2), random weights, float32 as scoring runs, then
                    the features' mean and covariance (`features/frechet.py` sample_moments), one line each;
  --ray only        ddp (2-worker Ray Train trial vs one process), metric_pool (the study's `MetricPool`),
                    ray_data (the Ray Data metric stage), micro_study (a whole study, MLflow included).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from raysweep.estimate.flops import GPU_PEAKS, Flops, count, gpu_model, peak_seconds

RAY_CPUS = 16


@dataclass(frozen=True)
class Sizes:
    """What the sections run at: on the GPU, or `--dry` on the CPU."""

    device: str
    backbones: tuple[str, ...]
    latent: tuple[int, int, int]  # (C, H, W): f16d32 at 256 px
    patch_size: int
    batch_size: int
    steps: int  # timed steps per training section (after `warmup` counted ones)
    warmup: int
    samples: int
    sampling_steps: int
    tokenizer: str
    tokenizer_latent: str
    image_size: int
    tokenizer_batch: int
    fd_batch: int
    fd_networks: tuple[tuple[str, str, int], ...]  # (section label, builder, input size)
    compile: bool

    @property
    def tokens(self) -> int:
        return (self.latent[1] // self.patch_size) * (self.latent[2] // self.patch_size)


GPU = Sizes("cuda", ("SiT-B", "LightningDiT-B"), (32, 16, 16), 1, 256, 20, 3, 128, 50, "conv-ldm", "f16d32", 256,
            16, 64, (("inception-v3", "inception", 299), ("dinov2-l", "vit_large_patch14_dinov2", 224)), True)
DRY = Sizes("cpu", ("SiT-T", "LightningDiT-T"), (8, 4, 4), 1, 8, 2, 1, 4, 4, "conv-tiny", "f2d4", 16, 4, 2,
            (("inception-v3", "inception", 75), ("dinov2-s", "vit_small_patch14_dinov2", 28)), False)


@dataclass(frozen=True)
class Peak:
    """The device's dense peaks (FLOP/s by precision), or why MFU is not reported."""

    model: str | None
    flops: dict[str, float] | None
    why_none: str | None = None

    @classmethod
    def of(cls, device: str) -> Peak:
        if device != "cuda":
            return cls(None, None, "no MFU on the CPU (no datasheet peak)")
        name = torch.cuda.get_device_name()
        model = gpu_model(name)
        if model is None:
            return cls(None, None, f"unknown GPU {name!r}: no peak in estimate/flops.py GPU_PEAKS "
                                   f"({', '.join(GPU_PEAKS)})")
        return cls(model, GPU_PEAKS[model])


def mfu(flops: Flops, seconds: float, precision: str, peak: Peak) -> dict[str, Any]:
    """"mfu" (the fraction of peak that `flops` done in `seconds` reach), or null with "mfu_why_null"."""
    if peak.flops is None:
        return {"mfu": None, "mfu_why_null": peak.why_none}
    return {"mfu": peak_seconds(flops, precision, peak.flops) / seconds, "peak_model": peak.model}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def counted_then_timed(run: Callable[[int], Any], warmup: int, steps: int, device: torch.device,
                       flops: Flops | None = None) -> tuple[Flops, float]:
    """`run(n)` does n steps. (FLOPs of one step, counted on the first warm-up step unless given; mean seconds per
    step of one `run(steps)` after the warm-up)."""
    if flops is None:
        flops = count(lambda: run(1))
        warmup -= 1
    if warmup > 0:
        run(warmup)
    sync(device)
    start = time.perf_counter()
    run(steps)
    sync(device)
    return flops, (time.perf_counter() - start) / steps


def repeated(step: Callable[[], Any]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            step()
    return run


def diffusion_train(s: Sizes, peak: Peak, backbone: str, compiled: bool, counted: dict[str, Flops]) -> dict[str, Any]:
    """`counted`: each backbone's step FLOPs, counted on its eager run and reused by its compiled one (FlopCounterMode
    does not see inside compiled graphs)."""
    from raysweep.diffusion import DiffusionTrainer, build_backbone, recipe_for

    device = torch.device(s.device)
    torch.manual_seed(0)
    c, h, w = s.latent
    model = build_backbone(backbone, in_channels=c, input_size=(h, w), num_classes=1000,
                           patch_size=s.patch_size).to(device)
    trainer = DiffusionTrainer(model, seed=0, **{**recipe_for(backbone).trainer_kwargs(), "compile": compiled})
    z = torch.randn(4 * s.batch_size, *s.latent, device=device)
    y = torch.arange(len(z), device=device) % 1000
    flops, seconds = counted_then_timed(lambda n: trainer.fit(z, y, n, s.batch_size), s.warmup, s.steps, device,
                                        counted.get(backbone))
    counted[backbone] = flops
    return {"model": f"{backbone}/{s.patch_size}", "compile": compiled, "latent": s.latent, "tokens": s.tokens,
            "batch_size": s.batch_size, "autocast": "bf16" if device.type == "cuda" else "none",
            "step_s": seconds, "flops_per_step": flops.total, **mfu(flops, seconds, "bf16", peak)}


def sampling(s: Sizes, peak: Peak) -> dict[str, Any]:
    from raysweep.diffusion import build_backbone, euler_sample
    from raysweep.diffusion.precision import backbone_autocast

    device, backbone = torch.device(s.device), s.backbones[0]
    torch.manual_seed(0)
    c, h, w = s.latent
    model = build_backbone(backbone, in_channels=c, input_size=(h, w), num_classes=1000,
                           patch_size=s.patch_size).to(device).eval()
    noise = torch.randn(s.samples, *s.latent, device=device)
    y = torch.arange(s.samples, device=device) % 1000

    @torch.no_grad()
    def run() -> None:
        with backbone_autocast(device):
            euler_sample(model, noise, y, steps=s.sampling_steps, cfg_scale=1.5)

    flops, seconds = counted_then_timed(repeated(run), 1, 1, device)
    return {"model": f"{backbone}/{s.patch_size}", "samples": s.samples, "sampling_steps": s.sampling_steps,
            "cfg_scale": 1.5, "samples_s": s.samples / seconds, "flops_per_run": flops.total,
            **mfu(flops, seconds, "bf16", peak)}


def tokenizer_train(s: Sizes, peak: Peak) -> dict[str, Any]:
    from raysweep.tokenizers import GanConfig, TokenizerTrainer, build_tokenizer
    from raysweep.tokenizers.regularizers.baseline import Baseline  # the registry would import pydantic

    device = torch.device(s.device)
    torch.manual_seed(0)
    model = build_tokenizer(s.tokenizer, s.tokenizer_latent, s.image_size).to(device)
    trainer = TokenizerTrainer(model, Baseline(None), batch_size=s.tokenizer_batch, gan=GanConfig(start=0),
                               mixed_precision=True)
    x = torch.rand(s.tokenizer_batch, 3, s.image_size, s.image_size, device=device) * 2 - 1
    flops, seconds = counted_then_timed(repeated(lambda: trainer.train_step(x)), s.warmup, s.steps, device)
    return {"architecture": s.tokenizer, "latent": s.tokenizer_latent, "image_size": s.image_size,
            "batch_size": s.tokenizer_batch, "gan": True,
            "lpips": False, "step_s": seconds, "flops_per_step": flops.total, **mfu(flops, seconds, "bf16", peak)}


def fd_features(s: Sizes, peak: Peak, label: str, builder: str, size: int) -> dict[str, Any]:
    """Forward passes of a feature network (float32, as scoring runs) and the feature moments of the batch."""
    from raysweep.features.frechet import sample_moments

    device = torch.device(s.device)
    torch.manual_seed(0)
    if builder == "inception":
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, init_weights=False)
        net.fc = torch.nn.Identity()  # the 2048-d pool features FD uses
    else:
        import timm

        net = timm.create_model(builder, pretrained=False, num_classes=0, img_size=size)
    net = net.to(device).eval()
    x = torch.rand(s.fd_batch, 3, size, size, device=device)
    features: list[torch.Tensor] = []

    @torch.no_grad()
    def run() -> None:
        features.append(net(x).float().cpu())

    flops, seconds = counted_then_timed(repeated(run), s.warmup, s.steps, device)
    start = time.perf_counter()
    mu, _ = sample_moments(torch.cat(features).numpy())  # what the reference cache stores (singular while N <= D)
    moments_s = time.perf_counter() - start
    return {"network": label, "builder": builder, "input": [3, size, size], "batch_size": s.fd_batch,
            "precision": "fp32",
            "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
            "images_s": s.fd_batch / seconds, "feature_dim": len(mu), "moments_s": moments_s,
            "flops_per_batch": flops.total, **mfu(flops, seconds, "fp32", peak)}


# --- the Ray sections (`--ray`): ray, mlflow and pydantic are imported only here --------------------------------

def ray_sections(s: Sizes, root: Path) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    not_gpu = {"mfu": None, "mfu_why_null": "not a FLOP-bound measurement"}
    return [("ddp", lambda: {**ddp(s, root), **not_gpu}),
            ("metric_pool", lambda: {**metric_pool(s, root), **not_gpu}),
            ("ray_data", lambda: {**ray_data(s, root), **not_gpu}),
            ("micro_study", lambda: {**micro_study(s, root), **not_gpu})]


def _pool_latents(s: Sizes, root: Path) -> Path:
    from metrics_bench import synthetic_latents

    from raysweep.data import write_latents

    n = 20_000 if s.device == "cuda" else 400
    directory = root / "pool"
    if not directory.exists():
        latents, labels, _ = synthetic_latents(n, (32, 16, 16), 10)
        write_latents(directory, latents, labels, tokenizer_id="gpu-check", rows_per_file=max(1, n // 32))
    return directory


def metric_pool(s: Sizes, root: Path) -> dict[str, Any]:
    """The study's metric pool (`MetricPool`), started once, then one warm job and one timed job."""
    import ray

    from raysweep.data import latent_files, read_latents
    from raysweep.engine.metric_pool import MetricPool
    from raysweep.metrics import MetricSet

    names = ["viv", "sec", "lnc", "spatial"]
    directory = _pool_latents(s, root)
    metrics = MetricSet(names, {}).with_footer(read_latents(latent_files(directory))[1])
    start = time.perf_counter()
    pool = MetricPool(8)
    ray.get([a.__ray_ready__.remote() for a in pool.actors])
    started = time.perf_counter() - start
    try:
        pool.merged_states(directory, metrics, (32, 16, 16), 256)  # warm: imports in the actors
        start = time.perf_counter()
        pool.merged_states(directory, metrics, (32, 16, 16), 256)
        job = time.perf_counter() - start
    finally:
        pool.close()
    return {"actors": 8, "metrics": names, "latent": [32, 16, 16], "start_s": started, "job_s": job}


def ray_data(s: Sizes, root: Path) -> dict[str, Any]:
    from metrics_bench import ray_stage

    directory = _pool_latents(s, root)
    ray_stage(directory, 1, 256, False)  # warm-up
    seconds = {}
    for n in (1, 8):
        start = time.perf_counter()
        ray_stage(directory, n, 256, False)
        seconds[n] = time.perf_counter() - start
    return {"seconds_1_actor": seconds[1], "seconds_8_actors": seconds[8], "speedup_8_over_1": seconds[1] / seconds[8]}


def micro_study(s: Sizes, root: Path) -> dict[str, Any]:
    """A whole study (reference net, a tokenizer, latent + model metrics, a diffusion trial) with fractional GPUs."""
    from raysweep.config import parse_study
    from raysweep.runner import run_study

    gpu = {"cpu": 1, "gpu": 0.25 if s.device == "cuda" else 0.0}
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
    start = time.perf_counter()
    result = run_study(study, analyze=False)
    return {"seconds": time.perf_counter() - start, "failed": len(result.failed), "stage_seconds": result.seconds}


def ddp(s: Sizes, root: Path) -> dict[str, Any]:
    """Steps/s of one process vs a 2-worker data-parallel Tune trial (gloo), both on the same global batch."""
    from ray import tune

    from raysweep.engine.data_parallel import Scaling, launch

    cuda = s.device == "cuda"
    single = _ddp_steps_s({"out": "", "sizes": asdict(s)})
    config = {"out": str(root / "ddp.json"), "sizes": asdict(s)}
    trainable = tune.with_parameters(launch, stage_fn=_ddp_trial,
                                     scaling=Scaling(2, 2.0, 0.5 if cuda else 0.0, backend="gloo"))
    tune.Tuner(tune.with_resources(trainable, {"cpu": 0.01}), param_space=config,
               run_config=tune.RunConfig(storage_path=str(root / "tune"), name="ddp", verbose=0)).fit()
    two = json.loads((root / "ddp.json").read_text())["steps_s"]
    return {"workers": 2, "devices": 1 if cuda else 0, "backend": "gloo", "single_steps_s": single,
            "two_worker_steps_s": two, "two_over_single": two / single}


def _ddp_steps_s(config: dict[str, Any]) -> float:
    from raysweep.diffusion import DiffusionTrainer, build_backbone
    from raysweep.nn.distributed import current_shard

    s = Sizes(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["sizes"].items()})
    device = torch.device(s.device)
    torch.manual_seed(0)
    c, h, w = s.latent
    model = build_backbone(s.backbones[0], in_channels=c, input_size=(h, w), num_classes=10).to(device)
    trainer = DiffusionTrainer(model, lr=1e-4, shard=current_shard())
    z, y = torch.randn(1024, *s.latent, device=device), torch.arange(1024, device=device) % 10
    trainer.fit(z, y, 2, s.batch_size)  # warm-up
    sync(device)
    start = time.perf_counter()
    trainer.fit(z, y, s.steps, s.batch_size)
    sync(device)
    return s.steps / (time.perf_counter() - start)


def _ddp_trial(config: dict[str, Any]) -> None:
    """Each Train worker times its steps, rank 0 writes the rate; the launcher's closing call reports it."""
    from ray import train, tune

    from raysweep.nn.distributed import in_train_worker, is_chief

    out = Path(config["out"])
    if not in_train_worker():
        tune.report(json.loads(out.read_text()))
        return
    rate = _ddp_steps_s(config)
    if is_chief():
        out.write_text(json.dumps({"steps_s": rate}))
    train.report({"steps_s": rate})


# --- the run -------------------------------------------------------------------------------------------------------

def emit(line: dict[str, Any]) -> None:
    """One section's JSON line, on stdout at once (a later crash or timeout keeps it)."""
    print(json.dumps(line, default=str), flush=True)


def sections(s: Sizes, peak: Peak) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    counted: dict[str, Flops] = {}
    out: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("diffusion_train", lambda b=backbone, c=compiled: diffusion_train(s, peak, b, c, counted))
        for backbone in s.backbones for compiled in ((False, True) if s.compile else (False,))]
    out += [("sampling", lambda: sampling(s, peak)), ("tokenizer_train", lambda: tokenizer_train(s, peak))]
    out += [("fd_features", lambda n=label, b=builder, z=size: fd_features(s, peak, n, b, z))
            for label, builder, size in s.fd_networks]
    return out


def run(s: Sizes, budget_s: float, with_ray: bool) -> int:
    """Every section in turn; returns how many failed."""
    start, failed = time.perf_counter(), 0
    peak = Peak.of(s.device)
    emit({"section": "device", "device": torch.cuda.get_device_name() if s.device == "cuda" else "cpu (dry run)",
          "torch": torch.__version__, "peak_model": peak.model, "peak_flops": peak.flops, "budget_s": budget_s,
          "mfu": None, "mfu_why_null": "not a measurement"})
    with tempfile.TemporaryDirectory() as tmp:
        todo = sections(s, peak)
        if with_ray:
            import ray

            sys.path.insert(0, str(Path(__file__).parent))  # metrics_bench, for the Ray Data and pool latents
            ray.init(address="local", num_cpus=RAY_CPUS if s.device == "cuda" else 8, include_dashboard=False,
                     log_to_driver=False)
            todo += ray_sections(s, Path(tmp))
        try:
            for name, section in todo:
                elapsed = time.perf_counter() - start
                if elapsed > budget_s:
                    emit({"section": name, "skipped": f"time budget spent ({elapsed:.0f} s of {budget_s:.0f} s)",
                          "mfu": None, "mfu_why_null": "not run"})
                    continue
                t0 = time.perf_counter()
                try:
                    line = {"section": name, **section()}
                except Exception as err:  # one section's failure must not lose the others
                    failed += 1
                    line = {"section": name, "error": f"{type(err).__name__}: {err}", "mfu": None,
                            "mfu_why_null": "the section failed"}
                emit({**line, "seconds": time.perf_counter() - t0})
        finally:
            if with_ray:
                ray.shutdown()
    emit({"section": "total", "seconds": time.perf_counter() - start, "failed": failed, "mfu": None,
          "mfu_why_null": "not a measurement"})
    return failed


def finite(value: Any) -> bool:
    """Every number in a nested result is finite (what the dry-run test checks)."""
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="toy sizes on the CPU, no torch.compile")
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="no section starts after this many seconds (default 240: 4 min)")
    parser.add_argument("--ray", action="store_true", help="also the Ray sections (ray, mlflow, pydantic needed)")
    args = parser.parse_args()
    if not args.dry and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; use --dry on a CPU machine")
    sys.exit(1 if run(DRY if args.dry else GPU, args.budget_s, args.ray) else 0)


if __name__ == "__main__":
    main()
