"""`benchmarks/gpu_check.py --dry` runs every section of the GPU check at tiny sizes on the CPU (torch.compile
apart) and prints one JSON object, alone on stdout, with every section's keys and only finite numbers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.e2e, pytest.mark.nightly]  # minutes long: `pytest -m nightly`


def test_dry_run_prints_one_json_with_every_section() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check import ACTORS, finite

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry"], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()  # the study's progress goes to stderr
    assert len(lines) == 1, lines[:-1]
    result = json.loads(lines[0])
    assert {"device", "sit_train", "cfg_sampling", "tokenizer_step", "micro_study", "metric_pool", "ddp"} <= set(result)
    assert result["dry"] is True and finite(result)
    run = result["sit_train"]["eager"]
    assert run["trainer_step_s"] > 0 and run["bare_step_s"] > 0 and 0 < run["mfu"] < 1
    assert result["sit_train"]["compiled"].startswith("not run: --dry")  # inductor's CPU build: minutes
    assert result["cfg_sampling"]["samples_s"] > 0
    assert result["tokenizer_step"]["bf16_step_s"] > 0 and result["tokenizer_step"]["fp32_step_s"] > 0
    study = result["micro_study"]
    assert study["failed"] == 0
    for name in ("equivariance", "distortion", "ifid"):  # computed by the study's model-metric stage
        assert any(name in key for key in study["model_metrics"]), (name, study["model_metrics"])
    assert all(result["metric_pool"][f"latents_s_{n}"] > 0 for n in ACTORS)
    assert result["ddp"]["single_steps_s"] > 0 and result["ddp"]["two_worker_steps_s"] > 0
