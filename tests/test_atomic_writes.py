"""Atomic writes: a writer of latent parts SIGKILLed at seeded random moments leaves every part on disk either
absent or complete and readable, and the next write finishes and leaves no temp files; `atomic_file` keeps the old
file when the body fails and removes only dead writers' temps."""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from raysweep.atomic import atomic_file, temp_name
from raysweep.data.latents import read_latents, write_latents

ROWS_PER_PART = 200
SHAPE = (16, 16, 16)  # 3 MiB parts: a random kill often lands inside a part write


def _latents(n: int) -> np.ndarray:
    """Content that says what it must be: latent row i is all sample_id i."""
    return np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, *SHAPE))


def _write_forever(directory: Path, seed: int) -> None:
    """The child: rewrite the set again and again, of a varying length (so stale parts are deleted too)."""
    rng = np.random.default_rng(seed)
    while True:
        n = int(rng.integers(600, 1001))
        write_latents(directory, _latents(n), np.arange(n) % 10, tokenizer_id="t", rows_per_file=ROWS_PER_PART)


def _check_parts(directory: Path) -> int:
    """Every visible part is a complete, readable part of some write; returns how many there are."""
    parts = sorted(directory.glob("part-*.parquet"))
    for part in parts:
        table = pq.read_table(part)  # raises on a torn file
        k = int(part.stem.split("-")[1])
        ids = table.column("sample_id").to_numpy()
        assert 1 <= len(ids) <= ROWS_PER_PART and (ids == k * ROWS_PER_PART + np.arange(len(ids))).all(), part
        latents = np.stack(table.column("latent").to_numpy(zero_copy_only=False))
        assert (latents == ids[:, None]).all(), part
    return len(parts)


def test_latent_writer_killed_at_random_moments_leaves_whole_parts(tmp_path: Path) -> None:
    rng = random.Random(17)
    directory = tmp_path / "latents"
    write_latents(directory, _latents(1000), np.arange(1000) % 10, tokenizer_id="t", rows_per_file=ROWS_PER_PART)
    fork = multiprocessing.get_context("fork")  # the child starts at once, with everything (pyarrow's lazy pandas
    #                                             import included, by the write above) already imported
    torn = 0
    for kill in range(8):
        proc = fork.Process(target=_write_forever, args=(directory, kill))
        proc.start()
        time.sleep(rng.uniform(0.05, 1.0))
        assert proc.pid is not None and proc.is_alive()
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        _check_parts(directory)
        torn += len(list(directory.glob(".part-*")))  # a temp left: the kill landed inside a part write

    n = 500
    write_latents(directory, _latents(n), np.arange(n) % 10, tokenizer_id="t", rows_per_file=ROWS_PER_PART)

    assert _check_parts(directory) == 3  # exactly the new set: stale parts of longer writes removed
    assert not list(directory.glob(".*")), "temp files of the killed writers are left"
    batch, _ = read_latents(sorted(directory.glob("part-*.parquet")))
    assert (batch.sample_id == np.arange(n)).all()
    assert torn >= 1, "no kill landed inside a part write: the test did not exercise atomicity"
    print(f"kills that landed inside a part write: {torn} of 8")


def test_atomic_file_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_only_dead_writers_temps_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    theirs = tmp_path / temp_name("x.npz").replace(f".{os.getpid()}.", f".{dead.pid}.")
    other_host = tmp_path / f".x.npz.elsewhere.{dead.pid}.tmp"
    live_file = tmp_path / temp_name("x.npz").replace(f".{os.getpid()}.", f".{os.getppid()}.")
    theirs.mkdir()
    (theirs / "x.npz").write_text("partial")
    for p in (other_host, live_file):
        p.write_text("partial")
    with atomic_file(tmp_path / "x.npz") as tmp:
        assert tmp.name == "x.npz" and tmp.parent.name.startswith(".x.npz.")
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x.npz", other_host.name, live_file.name])


def test_checkpoint_bytes_do_not_depend_on_the_writer(tmp_path: Path) -> None:
    """torch.save names its zip records after the file: a temp name with a pid would change every checkpoint's
    sha256 (and with it the evaluation card hash of every score made with it)."""
    import torch

    state = {"w": torch.arange(6.0).reshape(2, 3)}
    (tmp_path / "a").mkdir()
    torch.save(state, tmp_path / "a" / "domain.pt")
    with atomic_file(tmp_path / "domain.pt") as tmp:
        torch.save(state, tmp)
    assert (tmp_path / "domain.pt").read_bytes() == (tmp_path / "a" / "domain.pt").read_bytes()


def _open_tracker(uri: str) -> None:
    from raysweep.tracking import Tracker

    Tracker(uri, "e")


def test_tracking_db_creation_killed_at_random_moments_leaves_a_usable_store(tmp_path: Path) -> None:
    """MLflow migrates a new sqlite DB in ~60 steps; a kill among them used to leave a DB no run could open."""
    from raysweep.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rng = random.Random(5)
    fork = multiprocessing.get_context("fork")
    for _ in range(3):
        proc = fork.Process(target=_open_tracker, args=(uri,))
        proc.start()
        time.sleep(rng.uniform(0.2, 2.0))
        if proc.pid is not None and proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()

    tracker = Tracker(uri, "e")
    run_id = tracker.open_run("r", "tokenizer", "h")
    tracker.finish(run_id)
    assert [r.info.run_id for r in tracker.runs()] == [run_id]
    assert sorted(p.name for p in tmp_path.iterdir()) in (["mlflow.db"], ["artifacts", "mlflow.db"])
