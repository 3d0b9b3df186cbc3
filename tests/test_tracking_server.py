"""A real `mlflow server` stopped mid-training and restarted: logging queues, retries, and loses nothing.
Also: two studies on one tracking server never see each other's runs."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

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
