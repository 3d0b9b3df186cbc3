"""Diffusion throughput: train steps/s and samples/s per preset, and the raysweep trainer against plain PyTorch.

    python benchmarks/diffusion_bench.py                               # CPU: tiny presets on 4x8x8 latents
    python benchmarks/diffusion_bench.py --presets SiT-S --steps 5     # any preset, fewer steps
    python benchmarks/diffusion_bench.py --device cuda                 # SiT-B, LightningDiT-B on 32x16x16, bf16

Per preset (each with its own Table 2 recipe: sampler, loss, β2, clipping, EMA):
  * train steps/s    `DiffusionTrainer.fit` exactly as a Tune trial calls it (trainer built from the study trial
                     that names only the preset, `DiffusionTrial.trainer_kwargs()`), with the logging callback of
                     `raysweep.engine.checkpointing.train_with_checkpoints` (appends every step's logs);
  * plain steps/s    a minimal hand-written loop on the same model, batch and recipe: index, noise, t, label
                     dropout, interpolate, forward, loss, backward, (clip), AdamW, EMA lerp; no logging;
  * ratio            trainer / plain, both timed in alternation in the same process (median over repeats), so
                     load from other processes hits both alike; the target is >= 0.95. On CPU also per CPU second
                     of this process (`cpu_ratio`), which other processes' load cannot distort;
  * samples/s        the stage's `sample_latents` (bf16 autocast backbone on CUDA): Euler ODE, 50 steps, CFG 1.5
                     on the whole latent (two model passes per step).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from raysweep.config.spec import DiffusionTrial, EvaluationSpec
from raysweep.diffusion import DiffusionTrainer, build_backbone, get_loss, recipe_for
from raysweep.diffusion.backbones import FlowTransformer
from raysweep.diffusion.transport import interpolate, velocity_target
from raysweep.stages.generation import sample_latents

CPU_PRESETS = ["SiT-T", "LightningDiT-T"]
CUDA_PRESETS = ["SiT-B", "LightningDiT-B"]


@dataclass(frozen=True)
class Setup:
    device: torch.device
    shape: tuple[int, int, int]  # latent (C, H, W)
    batch_size: int
    steps: int
    repeats: int
    num_classes: int = 10
    n_latents: int = 2048
    compile: bool = False  # torch.compile the trainer's forward and the plain loop's model alike


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_model(name: str, setup: Setup) -> FlowTransformer:
    torch.manual_seed(0)
    c, h, w = setup.shape
    return build_backbone(name, in_channels=c, input_size=(h, w), num_classes=setup.num_classes).to(setup.device)


def trainer_run(name: str, setup: Setup, latents: torch.Tensor, labels: torch.Tensor) -> Callable[[int], None]:
    """The trial's path: trainer as the stage builds it for a trial naming only the preset (its recipe), `fit`
    with the checkpointing callback."""
    trial = DiffusionTrial(backbone=name, compile=setup.compile)
    trainer = DiffusionTrainer(make_model(name, setup), seed=0, **trial.trainer_kwargs())
    history: list[tuple[int, dict[str, float]]] = []
    return lambda steps: trainer.fit(latents, labels, steps, setup.batch_size,
                                     on_log=lambda step, logs: history.append((step, dict(logs))))


def plain_run(name: str, setup: Setup, latents: torch.Tensor, labels: torch.Tensor) -> Callable[[int], None]:
    """The same recipe written out by hand, global RNG on the device, nothing logged."""
    recipe = recipe_for(name)
    model = make_model(name, setup).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params, ema_params = list(model.parameters()), list(ema.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.lr, betas=(recipe.beta1, recipe.beta2),
                            weight_decay=recipe.weight_decay)
    loss_fn = get_loss(recipe.loss)
    dropout, null, dev = model.y_embedder.dropout, model.null_class, setup.device
    forward = torch.compile(model) if setup.compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def run(steps: int) -> None:
        for _ in range(steps):
            idx = torch.randint(len(latents), (setup.batch_size,), device=dev)
            x1, y = latents[idx], labels[idx]  # (B, C, H, W), (B,)
            x0 = torch.randn_like(x1)
            if recipe.timestep_sampler == "uniform":
                t = torch.rand(setup.batch_size, device=dev)
            else:
                t = torch.sigmoid(torch.randn(setup.batch_size, device=dev))
            y = torch.where(torch.rand(setup.batch_size, device=dev) < dropout, null, y)
            with autocast:
                pred = forward(interpolate(x0, x1, t), t, y).float()
            loss, _ = loss_fn(pred, velocity_target(x0, x1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, recipe.grad_clip)
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, params, 1.0 - recipe.ema_decay)

    return run


def timed(run: Callable[[int], None], steps: int, device: torch.device) -> tuple[float, float]:
    """Steps per wall-clock second and per CPU second of this process, of `run(steps)`."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run(steps)
    sync(device)
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


def train_throughput(name: str, setup: Setup) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(setup.n_latents, *setup.shape, generator=g).to(setup.device)
    labels = (torch.arange(setup.n_latents) % setup.num_classes).to(setup.device)
    runs = {"trainer": trainer_run(name, setup, latents, labels), "plain": plain_run(name, setup, latents, labels)}
    for run in runs.values():
        timed(run, max(2, setup.steps // 5), setup.device)  # warm-up: allocator, autocast caches, kernels
    rates: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for i in range(setup.repeats):
        order = list(runs) if i % 2 == 0 else list(runs)[::-1]  # alternate who goes first
        for key in order:
            rates[key].append(timed(runs[key], setup.steps, setup.device))
    wall = [a[0] / b[0] for a, b in zip(rates["trainer"], rates["plain"], strict=True)]
    cpu = [a[1] / b[1] for a, b in zip(rates["trainer"], rates["plain"], strict=True)]
    return {"trainer_steps_s": statistics.median(r[0] for r in rates["trainer"]),
            "plain_steps_s": statistics.median(r[0] for r in rates["plain"]),
            "ratio_median": statistics.median(wall), "ratio_min": min(wall), "ratio_max": max(wall),
            "cpu_ratio_median": statistics.median(cpu), "cpu_ratio_min": min(cpu), "cpu_ratio_max": max(cpu)}


def sample_throughput(name: str, setup: Setup, n: int, steps: int = 50, cfg_scale: float = 1.5) -> float:
    model = make_model(name, setup).eval()
    noise = torch.randn(n, *setup.shape, device=setup.device)
    y = torch.arange(n, device=setup.device) % setup.num_classes
    evaluation = EvaluationSpec(sampling_steps=steps, cfg_scales=[cfg_scale])

    def run(_: int) -> None:
        sample_latents(model, noise, y, cfg_scale, evaluation)

    run(0)  # warm-up
    return n * timed(run, 1, setup.device)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--presets", nargs="+", help="default: tiny presets on CPU, SiT-B and LightningDiT-B on CUDA")
    parser.add_argument("--shape", type=int, nargs=3, help="latent C H W; default 4 8 8 on CPU, 32 16 16 on CUDA")
    parser.add_argument("--batch-size", type=int, help="default 64 on CPU, 256 on CUDA")
    parser.add_argument("--steps", type=int, help="timed steps per repeat; default 40 on CPU, 50 on CUDA")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, help="samples per sampling run; default 64 on CPU, 256 on CUDA")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a trial gets 1 CPU by default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    setup = Setup(device=torch.device(args.device), shape=tuple(args.shape or ((32, 16, 16) if cuda else (4, 8, 8))),
                  batch_size=args.batch_size or (256 if cuda else 64), steps=args.steps or (50 if cuda else 40),
                  repeats=args.repeats)
    header = {"device": torch.cuda.get_device_name() if cuda else f"cpu, {args.threads} torch thread(s)",
              "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0], "latent": setup.shape,
              "batch_size": setup.batch_size, "steps": setup.steps, "repeats": setup.repeats,
              "autocast": "bf16" if cuda else "none"}
    print(json.dumps(header))
    for name in args.presets or (CUDA_PRESETS if cuda else CPU_PRESETS):
        row = {"preset": name, **train_throughput(name, setup),
               "samples_s": sample_throughput(name, setup, args.samples or (256 if cuda else 64))}
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
