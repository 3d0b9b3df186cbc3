"""The bad-input corpus (tests/bad_inputs/): every broken study file or data file is one clear line on stderr,
exit code 2, no traceback, and nothing written to the store or MLflow. Studies go through `raysweep run` and
`raysweep validate --preflight` (the same line before anything runs), latent files through `raysweep metrics` (the
real CLI entry point, in-process to keep the suite fast)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from raysweep.cli import EXIT_BAD_INPUT, main

CORPUS = Path(__file__).parent / "bad_inputs"
EXPECTED: dict[str, str] = yaml.safe_load((CORPUS / "expected.yaml").read_text())


def _corpus_entries() -> set[str]:
    studies = {f"studies/{p.name}" for p in (CORPUS / "studies").glob("*.yaml")}
    latents = {f"latents/{p.name}" for p in (CORPUS / "latents").iterdir()}
    return studies | latents


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def test_corpus_is_complete() -> None:
    assert _corpus_entries() == set(EXPECTED)
    assert len(EXPECTED) >= 30


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the corpus: relative paths in the studies resolve against it."""
    root = tmp_path_factory.mktemp("bad") / "corpus"
    shutil.copytree(CORPUS, root)
    return root


CASES = [(e, "run" if e.startswith("studies/") else "metrics") for e in sorted(EXPECTED)] + [
    (e, "validate --preflight") for e in sorted(EXPECTED) if e.startswith("studies/")]


@pytest.mark.parametrize(("entry", "command"), CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(entry: str, command: str, workdir: Path,
                                                          capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("RAYSWEEP_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = _files(workdir)
    argv = [*command.split(), entry]

    code = main(argv)  # an unexpected exception propagates and fails the test: that is the traceback check

    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert EXPECTED[entry] in err, err
    assert _files(workdir) == before  # no store files, no mlflow.db, no 'pwned' from a python tag
    assert not (workdir / "studies" / "bad").exists() or not _files(workdir / "studies" / "bad")


def test_validate_preflight_passes_a_good_study_and_writes_nothing(workdir: Path, capsys: pytest.CaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus's readable image folder, storage under the working copy: ok, exit 0, and no study directory."""
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = workdir / "good.yaml"
    study.write_text("name: good\ndataset: {name: imagefolder, root: data/images, image_size: 8, num_classes: 2,\n"
                     "          train_size: 8, val_size: 8}\nevaluation: {num_samples: 16}\n"
                     "storage: {root: out/good, latents: file://" + str(workdir) + "/out/latents}\n")
    before = _files(workdir)

    assert main(["validate", "--preflight", str(study)]) == 0, capsys.readouterr().err
    assert "ok" in capsys.readouterr().out
    assert _files(workdir) == before and not (workdir / "out").exists()
    assert main(["validate", "studies/unwritable_storage.yaml"]) == 0  # without --preflight: the file only
