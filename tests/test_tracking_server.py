"""A real `mlflow server` stopped mid-training and restarted: logging queues, retries, and loses nothing, also when
the trial is restored from its checkpoint on another node while the server is down. Also: two studies on one
tracking server never see each other's runs."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from raysweep.engine.checkpointing import UNSENT
from raysweep.tracking import Tracker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1 with a sqlite backend; `stop()` / `start()` keep the same port and DB."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--artifacts-destination", str(self.root / "artifacts")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server on port {self.port} did not come up in {timeout}s")

    def stop(self) -> None:
        import os
        import signal

        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn worker, both started by us
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.stop()


def test_server_down_and_back_loses_no_metric(server: Server) -> None:
    tracker = Tracker(server.uri, "outage", retry_timeout=60.0)
    impatient = Tracker(server.uri, "outage", retry_timeout=1.0)
    run_id = tracker.open_run("tokenizer/a", "tokenizer", "hash-a")
    other = impatient.open_run("tokenizer/b", "tokenizer", "hash-b")
    tracker.log_history(run_id, [(s, {"train/loss": 1.0 / (s + 1)}) for s in range(10)])

    server.stop()
    t0 = time.monotonic()
    for chunk in range(10, 30, 10):  # training goes on while the server is down
        tracker.log_history(run_id, [(s, {"train/loss": 1.0 / (s + 1)}) for s in range(chunk, chunk + 10)])
    assert time.monotonic() - t0 < 10, "logging must queue, not block, while the server is down"
    assert sum(len(rows) for _, rows in tracker.pending) == 20
    impatient.log_history(other, [(0, {"train/loss": 1.0})])
    with pytest.raises(Exception, match="(?i)connect|max retries"):
        impatient.finish(other)  # gives up after its timeout: raises rather than drop the queued metric
    assert len(impatient.pending) == 1

    server.start()
    tracker.log_history(run_id, [(s, {"train/loss": 1.0 / (s + 1)}) for s in range(30, 40)])
    tracker.finish(run_id)
    assert not tracker.pending
    history = tracker.client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(40))  # every step exactly once
    assert all(abs(m.value - 1.0 / (m.step + 1)) < 1e-12 for m in history)
    assert tracker.client.get_run(run_id).info.status == "FINISHED"
    impatient.finish(other)
    assert [m.step for m in tracker.client.get_metric_history(other, "train/loss")] == [0]


def test_two_studies_on_one_server_never_collide(server: Server) -> None:
    """Same stage, same config hash (identical tokenizer configs), different studies: separate runs and trees."""
    a, b = Tracker(server.uri, "study-a"), Tracker(server.uri, "study-b")
    run_a = a.open_run("tokenizer/x", "tokenizer", "same-hash")
    run_b = b.open_run("tokenizer/x", "tokenizer", "same-hash")
    assert run_a != run_b and a.experiment_id != b.experiment_id
    a.log_metrics(run_a, {"recon/psnr": 20.0})
    b.log_metrics(run_b, {"recon/psnr": 30.0})
    assert a.open_run("tokenizer/x", "tokenizer", "same-hash") == run_a  # reused, not duplicated
    assert [r.info.run_id for r in a.runs()] == [run_a] and [r.info.run_id for r in b.runs()] == [run_b]
    assert Tracker.metrics_of(a.runs()[0]) == {"recon/psnr": 20.0}


def test_buffered_metrics_survive_a_restore_on_another_node(server: Server, tmp_path: Path) -> None:
    """The checkpoint carries the buffer (as `train_with_checkpoints` saves it, loaded with weights_only); a new
    Tracker in the restored trial sends it once the server is back, skipping rows the store already has."""
    def loss(s: int) -> dict[str, float]:
        return {"train/loss": 1.0 / (s + 1), "train/lr": 1e-4 * s}

    lost = Tracker(server.uri, "restore", retry_timeout=60.0)
    run_id = lost.open_run("tokenizer/c", "tokenizer", "hash-c")
    lost.log_history(run_id, [(s, loss(s)) for s in range(5)])
    assert not lost.unsent(run_id)
    server.stop()
    lost.log_history(run_id, [(s, loss(s)) for s in range(5, 15)])  # buffered: the server is down
    assert len(lost.unsent(run_id)) == 20
    torch.save({"weights": torch.zeros(2), UNSENT: lost.unsent(run_id)}, tmp_path / "state.pt")
    step_5 = [r for r in lost.unsent(run_id) if r[3] == 5]
    del lost  # the node dies with its queue

    server.start()
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    restored = Tracker(server.uri, "restore", retry_timeout=60.0)
    again = [(name, value, ts, 4) for name, value, ts, _ in step_5]  # as if a sent batch's reply was lost: dropped
    restored.requeue(run_id, again + state[UNSENT])
    restored.log_history(run_id, [(s, loss(s)) for s in range(15, 20)])  # training resumed after the checkpoint
    restored.finish(run_id)
    for key in ("train/loss", "train/lr"):
        history = restored.client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(20)), key  # every step exactly once
        assert all(abs(m.value - loss(m.step)[key]) < 1e-12 for m in history)
