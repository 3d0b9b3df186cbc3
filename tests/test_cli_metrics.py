"""`raysweep metrics PATH... --json` on latent Parquet files: the MLflow keys, the same numbers as the library."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raysweep.data import read_latents, write_latents
from raysweep.metrics import compute_metrics


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raysweep.cli", "metrics", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def latent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    labels = np.arange(120) % 3
    latents = rng.normal(size=(120, 4, 8, 8)).astype(np.float32) + labels[:, None, None, None]
    masks = (rng.random((120, 8, 8)) < 0.5).astype(np.uint8)
    directory = tmp_path_factory.mktemp("latents")
    write_latents(directory, latents, labels, fg_masks=masks, tokenizer_id="t", rows_per_file=50)
    return directory


def test_metrics_json_matches_library(latent_dir: Path) -> None:
    proc = run(str(latent_dir), "--only", "viv,sec", "--json")
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout)
    for key in ("latent/velocity/viv", "latent/smoothness/sec@0.25", "latent/smoothness/sec@0.5"):
        assert key in values
    batch, _ = read_latents(sorted(latent_dir.glob("*.parquet")))
    expected = compute_metrics([batch], ["viv", "sec"])
    assert values["latent/velocity/viv"] == pytest.approx(float(expected["latent/velocity/viv"]), rel=1e-9)
    assert values["latent/smoothness/sec@0.5"] == pytest.approx(float(expected["latent/smoothness/sec@0.5"]))


def test_metrics_bad_input_is_one_line_exit_2(latent_dir: Path, tmp_path: Path) -> None:
    proc = run(str(latent_dir), "--only", "vivv")
    assert proc.returncode == 2 and "unknown metric" in proc.stderr and "Traceback" not in proc.stderr
    broken = tmp_path / "part-00000.parquet"
    broken.write_bytes((latent_dir / "part-00000.parquet").read_bytes()[:200])
    proc = run(str(broken), "--only", "sec")
    assert proc.returncode == 2, proc.stderr
    assert str(broken) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
