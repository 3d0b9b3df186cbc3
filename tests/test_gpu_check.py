"""`benchmarks/gpu_check.py` runs on a bare GPU box: `--dry` exits 0 with one JSON line per section, each with its
"mfu", while importing ray, mlflow, pydantic, optuna or torch-fidelity fails; its MFU is counted FLOPs over the
datasheet peak, checked on a model whose FLOPs are counted by hand."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from raysweep.estimate.flops import GPU_PEAKS, Flops, count, gpu_model

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("ray", "mlflow", "pydantic", "optuna", "torch_fidelity")
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_check import Peak, finite, mfu  # noqa: E402


def blocking_path(tmp_path: Path) -> Path:
    """A path entry whose packages shadow the installed ones and raise ImportError on import."""
    for name in BLOCKED:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the bare GPU box')\n")
    return tmp_path


@pytest.mark.e2e  # 26 s at load ~5 on the 2-core dev machine, 105 s at load 12
def test_dry_run_without_ray_mlflow_pydantic_optuna_fidelity(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocking_path(tmp_path)), str(ROOT)])}
    for name in BLOCKED:  # the blocking works: each import fails in such a process
        probe = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, env=env)
        assert probe.returncode != 0 and "not on the bare GPU box" in probe.stderr, name
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry"], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    sections = [line["section"] for line in lines]
    assert sections == ["device", "diffusion_train", "diffusion_train", "sampling", "tokenizer_train",
                        "fd_features", "fd_features", "total"]
    assert all("mfu" in line and "error" not in line and finite(line) for line in lines), lines
    assert all(line["mfu"] is None and "CPU" in line["mfu_why_null"] for line in lines[1:-1])  # no peak on a CPU
    train = lines[1:3]
    assert [t["model"] for t in train] == ["SiT-T/1", "LightningDiT-T/1"]  # the patch that runs
    assert all(t["tokens"] == 16 and t["step_s"] > 0 and t["flops_per_step"] > 0 for t in train)
    assert lines[3]["samples_s"] > 0 and lines[4]["step_s"] > 0
    assert [f["feature_dim"] for f in lines[5:7]] == [2048, 384]
    assert lines[-1]["failed"] == 0


def test_mfu_of_a_model_counted_by_hand() -> None:
    """Two linear layers, batch B: forward 2B(IH + HO); backward 2B·HO (input grad of layer 2) + 2B·HO + 2B·IH
    (weight grads; the input needs no grad), so one training step is 4B·IH + 6B·HO FLOPs."""
    b, i, h, o = 8, 32, 64, 16
    model = nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))
    x = torch.randn(b, i)
    flops = count(lambda: model(x).square().mean().backward())
    assert flops == Flops(0.0, 4 * b * i * h + 6 * b * h * o)
    peak = Peak("test GPU", {"bf16": 1e12, "tf32": 5e11, "fp32": 1e11})
    seconds = 1e-6  # one step per microsecond
    assert mfu(flops, seconds, "bf16", peak)["mfu"] == pytest.approx(flops.total / seconds / 1e12)
    matmul_peak = 5e11 if torch.backends.cuda.matmul.allow_tf32 else 1e11  # fp32 code: TF32 only where enabled
    assert mfu(flops, seconds, "fp32", peak)["mfu"] == pytest.approx(flops.total / seconds / matmul_peak)
    cpu = mfu(flops, seconds, "bf16", Peak.of("cpu"))
    assert cpu["mfu"] is None and "CPU" in cpu["mfu_why_null"]


@pytest.mark.parametrize(("name", "model"), [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"), ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
    ("NVIDIA H200", "NVIDIA H200"), ("NVIDIA A100-SXM4-80GB", "NVIDIA A100"), ("NVIDIA L40S", "NVIDIA L40S"),
    ("Tesla T4", None)])
def test_peak_looked_up_by_device_name(name: str, model: str | None) -> None:
    assert gpu_model(name) == model
    assert model is None or GPU_PEAKS[model]["bf16"] > GPU_PEAKS[model]["fp32"]
