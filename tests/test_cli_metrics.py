"""`raysweep metrics PATH... --json` on latent Parquet files: the MLflow keys, the same numbers as the library."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysweep.cli import main
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


def rewrite(source: Path, target: Path, column: str, values: pa.Array | None) -> Path:
    """A copy of a latent file (same footer metadata) with `column` replaced by `values`, or dropped if None."""
    table = pq.read_table(source)
    i = table.column_names.index(column)
    table = table.remove_column(i) if values is None else table.set_column(i, column, values)
    pq.write_table(table.replace_schema_metadata(pq.read_schema(source).metadata), target)
    return target


def assert_one_line_error(capsys: pytest.CaptureFixture, *args: str, needles: tuple[str, ...]) -> None:
    """`raysweep metrics ARGS` in process (the CLI's own main: exit code and stderr as a shell sees them)."""
    code = main(["metrics", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_bad_latent_files_give_one_line_errors_naming_file_and_column(latent_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    good = latent_dir / "part-00000.parquet"
    table = pq.read_table(good)
    flat = table["latent"].combine_chunks().flatten().to_numpy().copy()
    flat[5] = np.nan
    width = table["latent"].type.list_size
    nan_file = rewrite(good, tmp_path / "nan.parquet", "latent", pa.FixedSizeListArray.from_arrays(flat, width))
    assert_one_line_error(capsys, str(nan_file), "--only", "sec", needles=(str(nan_file), "'latent'", "NaN or inf"))

    no_label = rewrite(good, tmp_path / "nolabel.parquet", "label", None)
    assert_one_line_error(capsys, str(no_label), "--only", "sec", needles=(str(no_label), "'label'", "missing"))

    masks = np.ones((table.num_rows, 7 * 7), np.uint8).ravel()
    bad_mask = rewrite(good, tmp_path / "mask.parquet", "fg_mask", pa.FixedSizeListArray.from_arrays(masks, 49))
    assert_one_line_error(capsys, str(bad_mask), "--only", "sec", needles=(str(bad_mask), "'fg_mask'"))

    other = tmp_path / "other"
    write_latents(other, np.zeros((4, 2, 8, 8), np.float32) + np.arange(4)[:, None, None, None], np.arange(4),
                  tokenizer_id="t")
    mixed = sorted(other.glob("*.parquet"))[0]
    assert_one_line_error(capsys, str(good), str(mixed), "--only", "sec", needles=(str(mixed), "'latent'", "shape"))


def test_a_class_too_small_is_skipped_with_a_one_line_warning(tmp_path: Path) -> None:
    """A subprocess: the warning must reach a real stderr through logging's last-resort handler."""
    rng = np.random.default_rng(1)
    labels = np.array([0] * 12 + [1] * 12 + [2] * 2)
    write_latents(tmp_path, rng.normal(size=(26, 2, 4, 4)).astype(np.float32), labels, tokenizer_id="t")
    proc = run(str(tmp_path), "--only", "viv", "--json")
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout)
    assert values["latent/velocity/viv_classes_skipped"] == 1.0
    per_class = values["latent/velocity/viv_per_class"]
    assert np.isfinite(per_class[:2]).all() and np.isnan(per_class[2])
    warning = proc.stderr.strip().splitlines()
    assert len(warning) == 1 and "latent/velocity/viv" in warning[0] and "{2: 2}" in warning[0], proc.stderr
