"""The study lock: a second `raysweep run` on a store that one process runs exits 2 naming that process; a lock
whose holder died (SIGKILL, or only a stale file naming a dead pid) is taken over, by exactly one of several takers."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raysweep.cli import EXIT_BAD_INPUT, main
from raysweep.engine.lock import LOCK_FILE, study_lock

HOLD = """
import sys, time
from pathlib import Path
from raysweep.engine.lock import study_lock, StudyLocked
start, hold = float(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
try:
    with study_lock(Path(sys.argv[1])):
        print("won", flush=True)
        time.sleep(hold)
except StudyLocked as err:
    print("refused", err, flush=True)
"""


def _hold(root: Path, start: float = 0.0, hold: float = 600.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(start), str(hold)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_run_exits_2_naming_the_running_process(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "store"
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\nstorage: {{root: {root}}}\n")
    holder = _hold(root)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "won"

        assert main(["run", str(study)]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip()
        assert f"pid {holder.pid} on host {socket.gethostname()}" in err and "\n" not in err, err
        assert f"raysweep status {study}" in err
        assert json.loads((root / LOCK_FILE).read_text())["pid"] == holder.pid  # the refusal changed nothing
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    holder = _hold(tmp_path)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "won"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid  # left behind by the dead holder

    with study_lock(tmp_path) as me:
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == me.pid == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()  # released: removed


def test_stale_lock_file_of_a_dead_pid_is_taken_over_by_exactly_one_of_several(tmp_path: Path) -> None:
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "earlier", "command": "raysweep run"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
    start = time.time() + 3.0  # all four try at the same moment, each holds long enough to overlap the others
    takers = [_hold(tmp_path, start, hold=3.0) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].split()[0] for p in takers]

    assert sorted(outs) == ["refused", "refused", "refused", "won"]
    assert not (tmp_path / LOCK_FILE).exists()
