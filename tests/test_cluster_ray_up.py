"""`ray up` for real: cluster-onprem.yaml launched on this machine over SSH to 127.0.0.1, a micro study run on its
head with `ray exec` through the file's own setup and start commands (MLflow server included), its runs found on
that server, then `ray down`.

The test copy differs from cluster-onprem.yaml only where this machine forces it (`onprem_test_copy` lists it):
  * addresses: head 10.0.0.10 -> 127.0.0.1, no worker IPs (min/max_workers 0: one machine), GCS port 6379 and
    MLflow port 5000 -> free ports (other Ray users share this machine);
  * key: one the test makes; the user stays `raysweep` (created here when missing, as on a real node);
  * initialization_commands: the NFS mount becomes a local directory (`/mnt/raysweep` -> ~/shared: no NFS server,
    no sudo here);
  * setup_commands[0]: the new ~/venv (Debian's python3) gets the packages of the venv running the tests through a
    .pth file and its `ray`, `mlflow` and `raysweep` scripts, and PYTHONPATH points at the synced copy, instead of
    `pip install -e` (no package index here, and minutes of installs; the project venv's own interpreter lives
    under /root, which the user cannot read);
  * one more setup command: RAY_TMPDIR=~/raytmp, so this head's Ray never writes /tmp/ray/ray_current_cluster,
    which `address="auto"` of other Ray users on the machine would find.
Needs root (to install openssh-server and rsync from Debian's packages, add the user and start sshd). Where that is
missing it fails with the reason instead of skipping: it runs only when asked for (`pytest -m nightly`), and a skip
there would read as a cluster launch that worked.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
USER, HOME = "raysweep", Path("/home/raysweep")
HEAD_IP, GCS_PORT, MLFLOW_PORT = "10.0.0.10", "6379", "5000"
VENV = Path(sys.prefix) if sys.prefix != sys.base_prefix else None  # the virtual environment running the tests
PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"

pytestmark = [pytest.mark.e2e, pytest.mark.nightly]  # minutes long: `pytest -m nightly`


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*cmd: str, timeout: float = 120, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kw)  # type: ignore


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _prerequisites() -> str | None:
    """Why this machine cannot run the test, or None (installing what is missing when it can)."""
    if os.geteuid() != 0:
        return "needs root: installs openssh-server, adds the user 'raysweep' and starts sshd"
    if VENV is None:
        return "needs to run from a virtual environment (the head uses it as ~/venv)"
    missing = [p for p, exe in (("openssh-server", "/usr/sbin/sshd"), ("rsync", "/usr/bin/rsync"))
               if not Path(exe).exists()]
    if missing and shutil.which("apt-get") is None:
        return f"{', '.join(missing)} missing and no apt-get to install them"
    if missing:
        done = _run("apt-get", "install", "-y", "--no-install-recommends", *missing, timeout=300, check=False,
                    env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            return f"apt-get install {' '.join(missing)} failed: {done.stderr.strip()[-300:]}"
    return None


@pytest.fixture
def sshd(tmp_path: Path):
    """sshd on 127.0.0.1:22 (an already running one is used as is) and a key for the user 'raysweep'."""
    reason = _prerequisites()
    if reason:
        pytest.fail(f"ray up cannot be tested on this machine: {reason}")
    if _run("id", USER, check=False).returncode != 0:
        _run("useradd", "--create-home", "--shell", "/bin/bash", USER)
    _run("usermod", "-p", "*", USER)  # no password, not locked: key logins only
    venv = HOME / "venv"  # a fresh node: no venv, the stock .bashrc (the file's setup appends its exports)
    if venv.is_symlink():
        venv.unlink()
    elif venv.exists():
        shutil.rmtree(venv)
    shutil.copy("/etc/skel/.bashrc", HOME / ".bashrc")
    key = tmp_path / "id_ed25519"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    ssh_dir = HOME / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    _run("chown", "-R", f"{USER}:{USER}", str(ssh_dir))
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    pid_file, started = tmp_path / "sshd.pid", False
    if not _listening(22):
        _run("ssh-keygen", "-A")
        Path("/run/sshd").mkdir(exist_ok=True)
        done = _run("/usr/sbin/sshd", "-o", "ListenAddress=127.0.0.1", "-o", f"PidFile={pid_file}", check=False)
        if done.returncode != 0:
            pytest.fail(f"sshd cannot start here: {done.stderr.strip()}")
        started = True
        for _ in range(50):
            if _listening(22):
                break
            time.sleep(0.1)
    probe = _run("ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-o", "BatchMode=yes", f"{USER}@127.0.0.1", "true", check=False)
    if probe.returncode != 0:
        pytest.fail(f"ssh {USER}@127.0.0.1 with the test key fails: {probe.stderr.strip()[-300:]}")
    yield key
    if started and pid_file.exists():
        os.kill(int(pid_file.read_text()), 15)


def onprem_test_copy(key: Path, gcs_port: int, mlflow_port: int) -> dict:
    """cluster-onprem.yaml with the changes listed in the module docstring, and nothing else."""
    text = (ROOT / "cluster-onprem.yaml").read_text()
    text = text.replace(f"{HEAD_IP}:{MLFLOW_PORT}", f"127.0.0.1:{mlflow_port}")
    text = text.replace(f"--port {MLFLOW_PORT}", f"--port {mlflow_port}")
    text = text.replace(f"--port={GCS_PORT}", f"--port={gcs_port}").replace(f":{GCS_PORT}", f":{gcs_port}")
    text = text.replace(HEAD_IP, "127.0.0.1").replace("/mnt/raysweep", str(HOME / "shared"))
    config = yaml.safe_load(text)
    config["provider"]["worker_ips"] = []
    config["min_workers"] = config["max_workers"] = 0
    config["auth"] = {"ssh_user": USER, "ssh_private_key": str(key)}
    config["initialization_commands"] = [f"mkdir -p {HOME / 'shared'}"]
    assert config["setup_commands"][0].startswith("python3 -m venv ~/venv && ~/venv/bin/pip install")
    config["setup_commands"][0] = (
        f"python3 -m venv --without-pip ~/venv && echo {VENV}/lib/{PYTHON}/site-packages > "
        f"~/venv/lib/{PYTHON}/site-packages/project-venv.pth && for t in ray mlflow raysweep; do "
        f"sed \"1s|.*|#!$HOME/venv/bin/python|\" {VENV}/bin/$t > ~/venv/bin/$t && chmod +x ~/venv/bin/$t; done && "
        "(grep -q PYTHONPATH ~/.bashrc || echo 'export PYTHONPATH=~/raysweep' >> ~/.bashrc)")
    config["setup_commands"].append("mkdir -p ~/raytmp && (grep -q RAY_TMPDIR ~/.bashrc || "
                                    "echo 'export RAY_TMPDIR=~/raytmp' >> ~/.bashrc)")
    return config


MICRO = {
    "name": "onprem-micro",
    "dataset": {"name": "shapes", "image_size": 16, "num_classes": 4, "train_size": 64, "val_size": 32},
    "reference": {"train_steps": 5, "batch_size": 32},
    "tokenizers": {"architecture": "conv-tiny", "latent": "f2d4", "steps": 4, "batch_size": 16,
                   "variants": [{"regularizer": "baseline"}]},
    "diffusion": {"backbone": "SiT-T", "steps": 4, "batch_size": 16, "seeds": [0]},
    "evaluation": {"sampling_steps": 2, "cfg_scales": [1.0], "num_samples": 32, "trajectory_samples": 4},
    "metrics": {"names": ["viv"], "actors": 1, "batch_size": 32},
}


def test_ray_up_runs_a_study_on_the_onprem_head(sshd: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from raysweep.tracking import STAGE_TAG

    ray = str(Path(sys.executable).parent / "ray")
    mlflow_port = _free_port()
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump(onprem_test_copy(sshd, _free_port(), mlflow_port)))
    study = tmp_path / "micro.yaml"
    study.write_text(yaml.safe_dump(MICRO))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    try:
        up = _run(ray, "up", "-y", "--no-config-cache", str(cluster), cwd=ROOT, env=env, timeout=240, check=False)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        _run(ray, "rsync-up", str(cluster), str(study), "/home/raysweep/micro.yaml", cwd=ROOT, env=env)
        run = _run(ray, "exec", str(cluster), "cd ~/raysweep && ~/venv/bin/raysweep run ~/micro.yaml --address auto "
                   "--no-analysis", cwd=ROOT, env=env, timeout=300, check=False)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        client = MlflowClient(f"http://127.0.0.1:{mlflow_port}")
        experiment = client.get_experiment_by_name("onprem-micro")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        stages = sorted(r.data.tags.get(STAGE_TAG, "") for r in runs)
        assert stages == ["diffusion", "study", "tokenizer"], stages
        assert all(r.info.status == "FINISHED" for r in runs)
        down = _run(ray, "down", "-y", str(cluster), cwd=ROOT, env=env, timeout=120, check=False)
        assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
        raylets = _run("pgrep", "-u", USER, "raylet", check=False).stdout.split()
        assert not raylets, f"ray down left the head's Ray running: raylet {raylets}"
    finally:
        _run(ray, "down", "-y", str(cluster), cwd=ROOT, env=env, timeout=120, check=False)  # after a failure
        # ray down leaves the head's MLflow server (and its job workers) running: stop what the test's user runs
        for pid in _run("pgrep", "-u", USER, check=False).stdout.split():
            _run("kill", pid, check=False)
