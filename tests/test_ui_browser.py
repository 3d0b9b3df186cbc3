"""In a real headless Chromium: `raysweep ui` opens MLflow on the study's runs with their metrics (no clicks), and
`report.html` renders its figures. Skips, saying why, only where no Chromium is installed (.ci/run installs it)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from raysweep.cli import main
from raysweep.tracking import Tracker

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SERVER_START_S = 240.0  # the MLflow server imports MLflow, migrates the DB, starts its job runner: slow on 2 cores
IMAGE_CHECK = """<script>window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({alt: i.alt, loaded: i.complete, natural: i.naturalWidth,
    shown: i.getBoundingClientRect().width}));
  const out = document.createElement("pre"); out.id = "image-check"; out.textContent = JSON.stringify(images);
  document.body.appendChild(out);
});</script>"""

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")]


def _chromium(profile: Path, *args: str) -> str:
    """Chromium headless on a fresh profile, nothing fetched but the page; returns stdout (--dump-dom)."""
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--window-size=1600,1000", "--virtual-time-budget=30000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tracker, dict]:
    """The analysis tests' micro study (real sqlite MLflow, runs as the stages write them), each diffusion run
    with its `gen/best/gfid`, analysed by `raysweep analyze`."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_analysis_study import CFGS, _log_study, _study_yaml

    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    logged = _log_study(uri, "demo")
    tracker = Tracker(uri, "demo")
    for run in tracker.runs("diffusion"):
        metrics = Tracker.metrics_of(run)
        tracker.log_metrics(run.info.run_id, {"gen/best/gfid": min(metrics[f"gen/cfg{s:g}/gfid"] for s in CFGS)})
    path = _study_yaml(root, uri, "demo", [f"tok-{t}" for t in range(6)])
    assert main(["analyze", str(path), "--n-boot", "20"]) == 0
    return path, tracker, logged


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "raysweep ui exited"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise TimeoutError(f"{url} not up after {timeout} s")


def test_ui_opens_on_the_tokenizer_runs_with_their_metrics(study: tuple[Path, Tracker, dict],
                                                          tmp_path: Path) -> None:
    path, tracker, _ = study
    port = _free_port()
    log = tmp_path / "ui.out"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "ui", str(path), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy())
    try:
        _wait_for(f"http://127.0.0.1:{port}/health", proc, SERVER_START_S)
        url = re.search(r"^open (\S+)$", log.read_text(), re.M).group(1)  # the URL `raysweep ui` prints
        dom = _chromium(tmp_path / "profile", "--dump-dom", url)
        _chromium(tmp_path / "profile", f"--screenshot={tmp_path / 'runs.png'}", url)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert "Model training" in dom and "No data available" not in dom
    for run in tracker.runs("tokenizer"):
        psnr = Tracker.metrics_of(run)["recon/psnr"]
        assert run.info.run_name in dom and repr(psnr) in dom, run.info.run_name
    for column in ("recon/psnr", "latent/velocity/viv", "latent/semantic/lnc:5", "gen/best/gfid"):
        assert column in dom, column
    gfid = Tracker.metrics_of(tracker.runs("diffusion")[0])["gen/best/gfid"]
    assert repr(gfid) in dom
    print(f"screenshot: {tmp_path / 'runs.png'}")


def test_report_renders_its_figures(study: tuple[Path, Tracker, dict], tmp_path: Path) -> None:
    _, tracker, _ = study
    study_run = tracker.runs("study")[0].info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tracker.client.download_artifacts(study_run, "analysis/report.html", tmp))
        page = report.read_text()
    checked = tmp_path / "report.html"
    checked.write_text(page.replace("</body>", f"{IMAGE_CHECK}</body>"))
    dom = _chromium(tmp_path / "profile", "--dump-dom", checked.as_uri())
    images = json.loads(re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.S).group(1))
    assert len(images) == page.count("<img") >= 3
    assert all(i["loaded"] and i["natural"] > 0 for i in images), images
    lead = [i for i in images if i["alt"].startswith("lead_")]
    assert [i["alt"] for i in lead] == ["lead_ranking", "lead_headline", "lead_parallel"]
    assert all(i["shown"] > 0 for i in lead)  # open at the top of the page, not folded away
    _chromium(tmp_path / "profile", f"--screenshot={tmp_path / 'report.png'}", checked.as_uri())
    print(f"screenshot: {tmp_path / 'report.png'}")
