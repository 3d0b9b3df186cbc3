"""`raysweep metrics PATH... --json` on latent Parquet files: the MLflow keys, the same numbers as the library."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysweep.cli import main
from raysweep.data import read_latent_meta, read_latents, write_latents
from raysweep.data.latents import RESERVED_KEYS
from raysweep.latent_files import metrics_for_files, open_set
from raysweep.metrics import METRICS, compute_metrics, metrics_consuming


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


def refuse(token: str) -> None:
    raise AssertionError(f"not JSON: {token}")


def test_a_class_too_small_is_skipped_with_a_one_line_warning(tmp_path: Path) -> None:
    """A subprocess: the warning must reach a real stderr; the skipped class's entry is null with the reason."""
    rng = np.random.default_rng(1)
    labels = np.array([0] * 12 + [1] * 12 + [2] * 2)
    write_latents(tmp_path, rng.normal(size=(26, 2, 4, 4)).astype(np.float32), labels, tokenizer_id="t")
    proc = run(str(tmp_path), "--only", "viv", "--json")
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout, parse_constant=refuse)
    assert values["latent/velocity/viv_classes_skipped"] == 1.0
    per_class = values["latent/velocity/viv_per_class"]
    assert np.isfinite(per_class[:2]).all() and per_class[2] is None
    assert "{2: 2}" in values["undefined"]["latent/velocity/viv_per_class"]
    assert set(values["undefined"]) == {"latent/velocity/viv_per_class"}  # viv itself is defined over 2 classes
    warning = proc.stderr.strip().splitlines()
    assert len(warning) == 1 and "latent/velocity/viv" in warning[0] and "{2: 2}" in warning[0], proc.stderr


def strip_footer(directory: Path, target: Path, keep_shape: bool = True) -> Path:
    """Copies of a latent set's files without raysweep's statistics and tokenizer keys (another tool's files)."""
    target.mkdir()
    for path in sorted(directory.glob("*.parquet")):
        table = pq.read_table(path)
        kept = {k: v for k, v in table.schema.metadata.items() if keep_shape and k == b"raysweep.latent_shape"}
        pq.write_table(table.replace_schema_metadata(kept or None), target / path.name)
    return target


def assert_same_values(a: dict, b: dict, rtol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = (np.array(v, dtype=float) for v in (a[key], b[key]))  # None -> NaN
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0, equal_nan=True, err_msg=key)


def test_a_footer_without_statistics_gives_the_same_metrics(tmp_path: Path) -> None:
    """Every metric on a stripped copy equals the original's (rtol 1e-6); the first pass is said once. Channels on
    different scales and offsets, three parts: the streamed statistics must really standardise."""
    rng = np.random.default_rng(4)
    labels = np.arange(60) % 3
    scale = np.array([0.5, 3.0])[:, None, None]
    latents = (rng.normal(size=(60, 2, 4, 4)) * scale + labels[:, None, None, None] - 5.0).astype(np.float32)
    masks = (rng.random((60, 4, 4)) < 0.5).astype(np.uint8)
    written = tmp_path / "written"
    write_latents(written, latents, labels, fg_masks=masks, tokenizer_id="t", rows_per_file=25)
    said: list[str] = []
    original = metrics_for_files([written], say=said.append)
    assert not [s for s in said if s.startswith("note:")]
    stripped = metrics_for_files([strip_footer(written, tmp_path / "plain")], say=said.append)
    notes = [s for s in said if s.startswith("note:")]
    assert len(notes) == 1 and "first pass" in notes[0] and "60 rows" in notes[0], said
    assert len(original.values) > 20 and all(v is not None for v in original.values.values()), original.undefined
    assert_same_values(original.values, stripped.values, rtol=1e-6)
    assert original.undefined.keys() == stripped.undefined.keys()

    streamed = open_set([tmp_path / "plain"]).meta
    footer = read_latent_meta(written / "part-00000.parquet")
    np.testing.assert_allclose(streamed.channel_mean, footer.channel_mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.channel_std, footer.channel_std, rtol=1e-12)


def test_shape_flag_stands_in_for_a_missing_shape_key(latent_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    bare = strip_footer(latent_dir, tmp_path / "bare", keep_shape=False)
    assert_one_line_error(capsys, str(bare), "--only", "sec", needles=("raysweep.latent_shape", "--shape C,H,W"))
    assert main(["metrics", str(bare), "--only", "sec", "--shape", "4,8,8", "--json"]) == 0
    shaped = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert main(["metrics", str(latent_dir), "--only", "sec", "--json"]) == 0
    assert shaped == json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert_one_line_error(capsys, str(latent_dir), "--only", "sec", "--shape", "2,16,8",
                          needles=("raysweep.latent_shape", "[4, 8, 8]", "[2, 16, 8]"))
    with pytest.raises(SystemExit) as exit_:
        main(["metrics", str(latent_dir), "--shape", "4,8"])
    assert exit_.value.code == 2


def test_json_is_valid_with_null_and_a_reason_for_every_undefined_value(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """Too few latents for kNN, the probe, VIV and t-SNE, and no masks for SRSS: NaN everywhere, as null."""
    rng = np.random.default_rng(2)
    write_latents(tmp_path, rng.normal(size=(3, 2, 4, 4)).astype(np.float32), np.arange(3), tokenizer_id="t")
    assert main(["metrics", str(tmp_path), "--json"]) == 0
    values = json.loads(capsys.readouterr().out, parse_constant=refuse)
    undefined = values.pop("undefined")
    nulls = {k for k, v in values.items() if v is None or (isinstance(v, list) and None in v)}
    assert nulls == set(undefined) and {"latent/semantic/lnc@5", "latent/velocity/viv", "latent/spatial/srss",
                                        "latent/semantic/linear_probe", "latent/uniformity/gini"} <= nulls
    assert "too few for k" in undefined["latent/semantic/lnc@5"]
    assert "fewer than" in undefined["latent/velocity/viv"]
    assert "'fg_mask' absent" in undefined["latent/spatial/srss"]  # no metric warning: the census is the reason
    assert isinstance(values["latent/smoothness/sec@0.5"], float)  # defined values stay numbers
    assert main(["metrics", str(tmp_path), "--only", "lnc"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^latent/semantic/lnc@5 +null  \(undefined: .*too few for k", text, re.MULTILINE), text


def test_degenerate_latents(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Constant latents stop (one line, exit 2); one constant channel or one class is a warning, exit 0."""
    rng = np.random.default_rng(3)
    labels = np.arange(24) % 2
    write_latents(tmp_path / "constant", np.full((24, 3, 4, 4), 0.1, np.float32), labels, tokenizer_id="t")
    assert_one_line_error(capsys, str(tmp_path / "constant"), "--only", "viv",
                          needles=("'latent'", "every channel is constant", "part-00000.parquet"))
    dead = rng.normal(size=(24, 3, 4, 4)).astype(np.float32)
    dead[:, 1] = 0.1
    write_latents(tmp_path / "dead", dead, labels, tokenizer_id="t")
    assert main(["metrics", str(tmp_path / "dead"), "--only", "viv,sec", "--json"]) == 0
    out = capsys.readouterr()
    assert np.isfinite(json.loads(out.out, parse_constant=refuse)["latent/velocity/viv"])
    warning = out.err.strip().splitlines()
    assert len(warning) == 1 and "channel(s) [1] of 3 have zero variance" in warning[0], out.err
    write_latents(tmp_path / "one", rng.normal(size=(24, 3, 4, 4)), np.zeros(24, int), tokenizer_id="t")
    assert main(["metrics", str(tmp_path / "one"), "--only", "sec"]) == 0
    assert "one class (0) only" in capsys.readouterr().err
    points = rng.normal(size=(2, 3, 4, 4))[labels].astype(np.float32)  # each class a single point: VIV is 0
    write_latents(tmp_path / "points", points, labels, tokenizer_id="t")
    assert main(["metrics", str(tmp_path / "points"), "--only", "viv", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["latent/velocity/viv"] == pytest.approx(0.0, abs=1e-6)
    assert "every class are identical" in out.err and len(out.err.strip().splitlines()) == 1, out.err
    points[0, 0, 0, 0] += 1.0  # one class with spread: no warning
    write_latents(tmp_path / "spread", points, labels, tokenizer_id="t")
    assert main(["metrics", str(tmp_path / "spread"), "--only", "sec"]) == 0
    assert capsys.readouterr().err == ""


def test_metrics_help_lists_every_metric_and_the_contract(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["metrics", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for name, info in METRICS.items():  # the latent ones: the others need a tokenizer or a diffusion model
        listed = re.search(rf"^  {name} +{info.perspective} ", out, re.MULTILINE) is not None
        assert listed == (name in metrics_consuming("latents")), name
    for word in ("sample_id", "fixed_size_list<float32>[C*H*W]", "fg_mask", *RESERVED_KEYS, "first pass",
                 '"undefined"', "latents import"):
        assert word in out, word
