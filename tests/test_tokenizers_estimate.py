"""GPU-hours estimate: the FLOP model's structure against hand-counted layers, and a study-level roll-up."""
from __future__ import annotations

import pytest

from raysweep.config.loader import parse_study
from raysweep.config.spec import TokenizerTrial
from raysweep.pipeline.estimate import (
    ASSUMED_MFU,
    GPU_PEAK_FLOPS,
    _side_flops,
    estimate_gpu_hours,
    pass_flops,
    step_flops,
)


def test_vit_pass_flops_match_a_hand_count() -> None:
    """vit-tiny (width 64, 2 blocks, MLP 256) at f4d4 on 16 px: T = 16 tokens, 2·(multiply-adds) per matmul."""
    t, d, p, c = 16, 64, 4, 4
    block = 2 * t * (d * 3 * d + d * d + 2 * d * 4 * d) + 2 * 2 * t * t * d  # qkv, proj, mlp; q·k and a·v
    enc = 2 * t * (3 * p * p) * d + 2 * block + 2 * t * d * 2 * c
    dec = 2 * t * c * d + 2 * block + 2 * t * d * 3 * p * p
    assert pass_flops("vit-tiny", "f4d4", 16) == (enc, dec)


def test_step_flops_follow_the_model() -> None:
    e, d = pass_flops("conv-tiny", "f4d4", 16)
    v, g = _side_flops(16)
    base = TokenizerTrial(architecture="conv-tiny", latent="f4d4", batch_size=3)
    assert step_flops(base, 16, lpips=False, gan=False) == 3 * 3 * (e + d)
    eq = base.model_copy(update={"regularizer": "eq"})
    assert step_flops(eq, 16, lpips=True, gan=True) == 3 * (3 * (e + d) + 3 * d + 4 * v + 9 * g)


def test_study_roll_up() -> None:
    variants = [{"regularizer": "baseline"}, {"architecture": "vit-tiny", "regularizer": "mae"}]
    study = parse_study({"name": "s", "dataset": {"image_size": 16},
                         "tokenizers": {"latent": "f4d4", "steps": 10, "variants": variants}})
    out = estimate_gpu_hours(study, lpips=False, gan=False)
    assert [r["id"] for r in out["trials"]] == ["baseline", "mae"]
    assert set(out["by_family"]) == {"conv-f4d4", "vit-f4d4"}
    first = out["trials"][0]
    assert first["gpu_hours"] == pytest.approx(first["flops"] / (GPU_PEAK_FLOPS * ASSUMED_MFU) / 3600)
    assert out["tokenizer_gpu_hours"] == pytest.approx(sum(out["by_family"].values()))
    assert all(m["cpu_flops_per_s"] > 0 for m in out["measured"].values())
