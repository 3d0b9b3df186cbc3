"""Study estimate: counted FLOPs against hand counts, the per-step models, and how the stage totals respond to the
study (steps, CFG scales, trial counts)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from raysweep.config import load_study
from raysweep.config.loader import parse_study
from raysweep.config.spec import StudySpec, TokenizerTrial
from raysweep.estimate.flops import Flops, count, patchgan_flops, tokenizer_flops, vgg_flops
from raysweep.estimate.gpu_hours import ASSUMED_MFU, GPU_PEAK_FLOPS, estimate_gpu_hours, gpu_seconds, step_flops

PAPER = Path(__file__).resolve().parents[1] / "experiments" / "paper" / "table1.yaml"


def _study(**overrides: object) -> StudySpec:
    spec = {"name": "s", "dataset": {"image_size": 16, "train_size": 64, "val_size": 32},
            "tokenizers": {"latent": "f4d4", "steps": 10,
                           "variants": [{"regularizer": "baseline"},
                                        {"architecture": "vit-tiny", "regularizer": "mae"}]},
            "diffusion": {"variants": [{"backbone": "SiT-T", "steps": 20, "batch_size": 4}]},
            "evaluation": {"sampling_steps": 4, "cfg_scales": [1.0, 2.0], "num_samples": 16, "trajectory_samples": 2}}
    spec.update(overrides)
    return parse_study(spec)


def test_count_splits_a_conv_and_a_matmul_by_hand() -> None:
    """Conv 3->8, 3x3 on 10x10: 2·(8·10·10)·(3·3·3); Linear 5->7 on 4 rows: 2·4·5·7."""
    with torch.device("meta"):
        conv, lin = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Linear(5, 7)
        x, y = torch.empty(1, 3, 10, 10), torch.empty(4, 5)
        assert count(lambda: conv(x)) == Flops(conv=2 * 8 * 10 * 10 * 27, matmul=0)
        assert count(lambda: lin(y)) == Flops(conv=0, matmul=2 * 4 * 5 * 7)


def test_vit_pass_flops_match_a_hand_count() -> None:
    """vit-tiny (width 64, 2 blocks, MLP 256) at f4d4 on 16 px: T = 16 tokens, 2·(multiply-adds) per matmul."""
    t, d, p, c = 16, 64, 4, 4
    block = 2 * t * (d * 3 * d + d * d + 2 * d * 4 * d) + 2 * 2 * t * t * d  # qkv, proj, mlp; q·k and a·v
    enc = 2 * t * (3 * p * p) * d + 2 * block + 2 * t * d * 2 * c
    dec = 2 * t * c * d + 2 * block + 2 * t * d * 3 * p * p
    e, dd = tokenizer_flops("vit-tiny", "f4d4", 16)
    assert (e.total, dd.total) == (enc, dec)


def test_step_flops_follow_the_model() -> None:
    e, d = tokenizer_flops("conv-tiny", "f4d4", 16)
    v, g = vgg_flops(16), patchgan_flops(16)
    base = TokenizerTrial(architecture="conv-tiny", latent="f4d4", batch_size=3)
    assert step_flops(base, 16, gan_on=True) == 3 * 3 * (e + d)  # no LPIPS, no GAN weight: neither counted
    eq = base.model_copy(update={"regularizer": "eq", "perceptual_weight": 1.0, "gan_weight": 0.5})
    assert step_flops(eq, 16, gan_on=True).total == pytest.approx((3 * (3 * (e + d) + 3 * d + 4 * v + 9 * g)).total)
    assert step_flops(eq, 16, gan_on=False).total == pytest.approx((3 * (3 * (e + d) + 3 * d + 4 * v)).total)


def test_gpu_seconds_use_the_precision_peak() -> None:
    flops = Flops(conv=1e15, matmul=1e15)
    assert gpu_seconds(flops, "bf16") == pytest.approx(2e15 / (GPU_PEAK_FLOPS["bf16"] * ASSUMED_MFU))
    assert gpu_seconds(flops, "fp32") > gpu_seconds(flops, "bf16")


def test_stages_sum_to_the_totals() -> None:
    out = estimate_gpu_hours(_study())
    stages = out["stages"]
    assert set(stages) == {"reference", "tokenizer_training", "tokenizer_evaluation", "latent_metrics",
                           "diffusion_training", "sampling", "sample_scoring"}
    assert out["gpu_hours"] == pytest.approx(sum(s["gpu_hours"] for s in stages.values()))
    assert out["cpu_hours"] == pytest.approx(sum(s["cpu_hours"] for s in stages.values()))
    assert [r["id"] for r in out["tokenizers"]] == ["baseline", "mae"]
    training = stages["tokenizer_training"]
    assert training["gpu_hours"] == pytest.approx(sum(training["by_group"].values()))
    assert training["gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in out["tokenizers"]))
    assert all(s["gpu_hours"] > 0 for n, s in stages.items() if n != "latent_metrics")
    assert stages["latent_metrics"]["cpu_hours"] > 0
    assert out["counts"] == {"tokenizers": 2, "diffusion_trials": 2, "diffusion_trials_by_backbone": {"SiT-T": 2},
                             "train_images": 64, "val_images": 32,
                             "velocity_evaluations_per_sample": 4 + 2 * 4}  # scale 1: 4; scale 2: 2 per step


def test_doubling_steps_doubles_training_hours_only() -> None:
    base = estimate_gpu_hours(_study())["stages"]
    tokenizers = {"latent": "f4d4", "steps": 20, "variants": [{"regularizer": "baseline"},
                                                              {"architecture": "vit-tiny", "regularizer": "mae"}]}
    doubled = estimate_gpu_hours(_study(tokenizers=tokenizers))["stages"]
    assert doubled["tokenizer_training"]["gpu_hours"] == pytest.approx(2 * base["tokenizer_training"]["gpu_hours"])
    assert doubled["sampling"]["gpu_hours"] == pytest.approx(base["sampling"]["gpu_hours"])


def test_a_cfg_scale_adds_sampling_and_scoring_hours_only() -> None:
    base = estimate_gpu_hours(_study())
    evaluation = {"sampling_steps": 4, "cfg_scales": [1.0, 2.0, 3.0], "num_samples": 16, "trajectory_samples": 2}
    more = estimate_gpu_hours(_study(evaluation=evaluation))
    for stage in ("sampling", "sample_scoring"):
        assert more["stages"][stage]["gpu_hours"] > base["stages"][stage]["gpu_hours"]
    assert more["stages"]["diffusion_training"]["gpu_hours"] == base["stages"]["diffusion_training"]["gpu_hours"]
    assert more["counts"]["velocity_evaluations_per_sample"] == 4 + 2 * (2 * 4)


def test_paper_study_counts_86_tokenizers_on_all_of_imagenet() -> None:
    out = estimate_gpu_hours(load_study(PAPER))
    assert out["counts"]["tokenizers"] == 86 and out["counts"]["diffusion_trials"] == 344
    assert (out["counts"]["train_images"], out["counts"]["val_images"]) == (1281167, 50000)
    assert set(out["stages"]["tokenizer_training"]["by_group"]) == {"conv-f16d32", "conv-f16d64", "trans-f16d32"}
    assert set(out["stages"]["diffusion_training"]["by_group"]) == {"SiT-B", "SiT-XL", "LightningDiT-B",
                                                                   "LightningDiT-XL"}
