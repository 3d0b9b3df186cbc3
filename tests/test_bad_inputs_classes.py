"""One test per class of the second bad-input pass (issue 27): the error funnel (one escaped line, no warning
before it, -v's traceback, a bug said to be one), checks `validate` makes before the run, latent files refused
before any metric (or a metric null with its reason), and `status`/`ui` without side effects. The property-based
test (test_bad_inputs_property.py) covers the inputs nobody listed; the corpus (test_bad_inputs.py) the examples."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysweep import cli
from raysweep.cli import EXIT_BAD_INPUT, EXIT_BUG, main
from raysweep.config import load_study
from raysweep.data.latents import LATENT, MEAN_KEY, STD_KEY, compute_norm_hash, write_latents


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# -- the funnel -----------------------------------------------------------------------------------------------


def test_control_characters_in_a_file_name_and_a_value_are_escaped(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    study = tmp_path / "st\x1b[2Judy\n.yaml"
    study.write_text('name: s\ntokenizers: {regularizer: "eq\\x07\\x1b]0;title"}\n')
    assert main(["validate", str(study)]) == EXIT_BAD_INPUT
    line = _one_error_line(capsys.readouterr().err)
    assert line.isprintable() and "st\\x1b[2Judy\\n.yaml" in line and "eq\\x07\\x1b]0;title" in line


def test_a_library_warning_never_precedes_the_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    """A command that makes numpy warn (divide by zero) and then meets bad input: only the error line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: s\nseed: -1\n")

    def warns_then_fails(args: object) -> int:
        np.log(np.zeros(1))  # RuntimeWarning: divide by zero
        load_study(bad)
        return 0

    monkeypatch.setattr(cli, "cmd_validate", warns_then_fails)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["validate", str(bad)]) == EXIT_BAD_INPUT
    assert _one_error_line(capsys.readouterr().err) == f"error: {bad}: seed: Input should be greater than or equal to 0"


def test_verbose_adds_the_traceback_of_a_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["validate", "-v", str(missing)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1] == f"error: {missing}: file not found"


def test_an_internal_error_shows_its_traceback_and_says_it_is_a_bug(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    def buggy(args: object) -> int:
        return [0][1]  # IndexError: raysweep's fault, whatever the input

    monkeypatch.setattr(cli, "cmd_plan", buggy)
    assert main(["plan", "any.yaml"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback" in err and "IndexError" in err
    assert err.strip().splitlines()[-1].startswith("error: internal error (IndexError: list index out of range)")
    assert "bug in raysweep" in err.strip().splitlines()[-1]


def test_argument_errors_are_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["ui", "s.yaml", "--port", "70000"])
    assert exit_.value.code == EXIT_BAD_INPUT
    assert "argument --port: expected an integer from 1 to 65535" in _one_error_line(capsys.readouterr().err)


# -- validate checks what run would hit later ------------------------------------------------------------------


def test_an_integer_past_pythons_digit_limit_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nseed: " + "9" * 5000 + "\n")
    assert main(["validate", str(study)]) == EXIT_BAD_INPUT
    assert "invalid YAML value: Exceeds the limit (4300 digits)" in _one_error_line(capsys.readouterr().err)


def test_yaml_1_2_floats_are_numbers_and_strings_are_not(tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text("name: s\ntokenizers: {lr: 1e-4, kl_weight: 2.5E-7}\ndiffusion: {lr: 3e-4}\n")
    loaded = load_study(study)
    assert loaded.tokenizer_trials[0].lr == 1e-4 and loaded.tokenizer_trials[0].kl_weight == 2.5e-7
    assert loaded.diffusion_trials[0].lr == 3e-4


@pytest.mark.parametrize(("text", "expected"), [
    ("name: s\ndataset: {image_size: 32}\ntokenizers: {variants: [{latent: f4d4}, {latent: f8d4}]}\n"
     "diffusion: {patch_size: 4}\n",  # 8x8 and 4x4 grids: 4 divides both ...
     None),
    ("name: s\ndataset: {image_size: 32}\ntokenizers: {variants: [{latent: f4d4}, {latent: f16d4}]}\n"
     "diffusion: {patch_size: 4}\n",  # ... but not the 2x2 grid of the f16 tokenizer
     "diffusion.patch_size: patch_size 4 does not divide the 2x2 latent grid of tokenizers (trial 1"),
    ("name: s\nmetrics: {names: [sec], params: {sec: {threshold: 2}}}\n", "metrics.params.sec: metric 'sec': unknown"),
    ("name: s\ndataset: {seed: 4294967296}\n", "dataset.seed: Input should be less than 4294967296"),
    ("name: s\ntokenizers: {seed: false}\n", "tokenizers.seed: Input should be an integer, not the boolean false"),
    ("name: s\ndiffusion: {compile: yes}\n",  # YAML 1.2: yes is a string, not YAML 1.1's true
     "diffusion.compile: Input should be true or false, not the string 'yes'"),
    ("name: s\nevaluation: {guidance_interval: [0.3, 0.3]}\n", "evaluation.guidance_interval: must be [low, high]"),
    ("name: s\ntokenizers: {num_samples: 100000000, lr: {uniform: [1.0e-4, 1.0e-3]}}\n",
     "tokenizers: resolves to more than 10000 trials"),
])
def test_cross_field_and_type_checks_before_the_run(text: str, expected: str | None, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(text)
    code = main(["validate", str(study)])
    err = capsys.readouterr().err
    if expected is None:
        assert code == 0, err
    else:
        assert code == EXIT_BAD_INPUT and expected in _one_error_line(err), err


# -- latent files ----------------------------------------------------------------------------------------------


def _latents(directory: Path, n: int = 30, classes: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    latents = rng.normal(size=(n, 2, 4, 4)).astype(np.float32) + labels[:, None, None, None]
    write_latents(directory, latents, labels, tokenizer_id="t")
    return directory / "part-00000.parquet"


def _metrics(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["metrics", "--json", "--only", "lnc,linear_probe,sec", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_same_file_twice_is_refused_however_it_is_given(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    part = _latents(tmp_path / "lat")
    (tmp_path / "link.parquet").symlink_to(part)
    link = str(tmp_path / "link.parquet")
    for args in ([str(part), str(part)], [str(tmp_path / "lat"), str(part)], [str(part), link]):
        code, _, err = _metrics(capsys, *args)
        assert code == EXIT_BAD_INPUT and "the same file as" in _one_error_line(err), args
    # a copy under another name: caught by its sample_ids, naming both rows
    (tmp_path / "lat" / "part-00001.parquet").write_bytes(part.read_bytes())
    code, _, err = _metrics(capsys, str(tmp_path / "lat"))
    assert code == EXIT_BAD_INPUT
    assert "column 'sample_id': 30 repeated id(s), first 0 at row 0 of" in _one_error_line(err)


def _rewrite(part: Path, table: pa.Table) -> None:
    pq.write_table(table, part)


def test_null_inside_a_latent_row_is_refused_naming_the_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    part = _latents(tmp_path)
    table = pq.read_table(part)
    flat = table[LATENT].combine_chunks().flatten()
    values = pa.array([None if i == 7 * 32 + 5 else v for i, v in enumerate(flat.to_pylist())], pa.float32())
    _rewrite(part, table.set_column(2, LATENT, pa.FixedSizeListArray.from_arrays(values, 32))
             .replace_schema_metadata(table.schema.metadata))
    code, _, err = _metrics(capsys, str(part))
    assert code == EXIT_BAD_INPUT
    assert "column 'latent': 1 null value(s) inside the lists (first: row 7)" in _one_error_line(err)


def test_non_finite_latent_is_refused_naming_row_and_sample(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    part = _latents(tmp_path)
    table = pq.read_table(part)
    flat = table[LATENT].combine_chunks().flatten().to_numpy().copy()
    flat[12 * 32] = np.inf
    _rewrite(part, table.set_column(2, LATENT, pa.FixedSizeListArray.from_arrays(pa.array(flat), 32))
             .replace_schema_metadata(table.schema.metadata))
    code, _, err = _metrics(capsys, str(part))
    assert code == EXIT_BAD_INPUT
    assert "1 row(s) contain NaN or inf (first: row 12, sample_id 12)" in _one_error_line(err)


@pytest.mark.parametrize(("key", "values", "expected"), [
    (STD_KEY, [float("nan"), 1.0], "metadata 'raysweep.channel_std': channel 0 is nan; allowed: finite numbers >= 0"),
    (STD_KEY, [1.0, -1.0], "metadata 'raysweep.channel_std': channel 1 is -1.0"),
    (MEAN_KEY, [float("inf"), 0.0], "metadata 'raysweep.channel_mean': channel 0 is inf"),
    (STD_KEY, [10.0, 10.0], "metadata 'raysweep.channel_std': channel 0 says 10 but the data's is"),
    (MEAN_KEY, [5.0, 1.0], "metadata 'raysweep.channel_mean': channel 0 says 5 but the data's is"),
])
def test_footer_statistics_are_checked_against_the_data(key: str, values: list[float], expected: str,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Edited statistics with their hash recomputed (so only the values can give them away)."""
    part = _latents(tmp_path)
    table = pq.read_table(part)
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    meta[key] = json.dumps(values)
    meta["raysweep.norm_hash"] = compute_norm_hash(np.array(json.loads(meta[MEAN_KEY])),
                                                   np.array(json.loads(meta[STD_KEY])))
    _rewrite(part, table.replace_schema_metadata(meta))
    code, _, err = _metrics(capsys, str(part))
    assert code == EXIT_BAD_INPUT and expected in _one_error_line(err), err


def test_one_part_of_a_written_set_passes_the_footer_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A part file carries the whole set's statistics: the check must not refuse it."""
    rng = np.random.default_rng(1)
    labels = np.arange(300) % 3
    write_latents(tmp_path, rng.normal(size=(300, 2, 4, 4)).astype(np.float32), labels, tokenizer_id="t",
                  rows_per_file=100)
    code, _, err = _metrics(capsys, str(tmp_path / "part-00001.parquet"))
    assert code == 0, err


@pytest.mark.parametrize(("classes", "n", "reason"), [(1, 30, "all in one class"), (16, 17, "hold a single latent")])
def test_label_metrics_undefined_by_the_labels_are_null_with_a_reason(classes: int, n: int, reason: str,
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    _latents(tmp_path, n=n, classes=classes)
    code, out, err = _metrics(capsys, str(tmp_path))
    assert code == 0, err
    report = json.loads(out)
    for key in ("latent/semantic/lnc@5", "latent/semantic/linear_probe"):
        assert report[key] is None and reason in report["undefined"][key], report
    sec = [v for k, v in report.items() if k.startswith("latent/smoothness/sec@")]
    assert sec and all(isinstance(v, float) for v in sec)  # label-free metrics keep their values


# -- status and ui ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["ui"], ["analyze"]])
def test_status_ui_analyze_on_a_study_never_run_write_nothing(command: list[str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\nstorage: {{root: {tmp_path}/store}}\n")
    assert main([*command, str(study)]) == EXIT_BAD_INPUT
    assert _one_error_line(capsys.readouterr().err) == (
        f"error: {study}: no tracking store at sqlite:///{tmp_path}/store/mlflow.db: the study has not run yet; "
        f"start the study with `raysweep run {study}`")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


@pytest.mark.parametrize("content", [b"", b"not a database\n"])
def test_status_on_a_store_that_is_no_database_is_one_line(content: bytes, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "mlflow.db").write_bytes(content)
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\ntracking: {{uri: 'sqlite:///{tmp_path}/store/mlflow.db'}}\n")
    assert main(["status", str(study)]) == EXIT_BAD_INPUT
    assert "mlflow.db is not an SQLite database" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "store" / "mlflow.db").read_bytes() == content  # not migrated into a store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tracked_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study with its tracking store (tracking.uri set, so MLFLOW_TRACKING_URI cannot redirect it)."""
    from raysweep.tracking import Tracker

    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root}/store/mlflow.db"
    study = root / "s.yaml"
    study.write_text(f"name: s\nstorage: {{root: {root}/store}}\ntracking: {{uri: '{uri}'}}\n")
    Tracker(uri, "s")
    return study


def test_ui_refuses_a_port_in_use_before_starting(tracked_study: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", str(tracked_study), "--port", str(port)]) == EXIT_BAD_INPUT
    assert f"--port: cannot listen on 127.0.0.1:{port}" in _one_error_line(capsys.readouterr().err)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.e2e
def test_sigterm_to_raysweep_ui_stops_the_mlflow_server(tracked_study: Path, tmp_path: Path) -> None:
    """A real `raysweep ui`: once its server answers, SIGTERM to the pid we started (not its group) closes the
    port and leaves no process of the group behind."""
    port = _free_port()
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "ui", str(tracked_study), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "ui.log").read_text()
            time.sleep(0.5)
        assert "mlflow" in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")  # exec'd
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while (_listening(port) or _group_alive(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(port) and not _group_alive(proc.pid)
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
