"""Node failure on a real multi-node Ray cluster (`ray.cluster_utils.Cluster`: a head and worker nodes on this
machine): the node running the tokenizer trial, then the one running the diffusion trial, is removed mid-training.
Both trials resume from their last checkpoint on another node and finish, with one MLflow run each and a
continuous metric history."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_e2e_study import micro_study

from raysweep.config import load_study
from raysweep.tracking import STAGE_TAG, Tracker

pytestmark = pytest.mark.e2e
TOKENIZER_STEPS, DIFFUSION_STEPS, EVERY = 120, 120, 10


def _study(root: Path) -> dict[str, Any]:
    data = micro_study(root)
    data["tokenizers"] = {**data["tokenizers"], "steps": TOKENIZER_STEPS, "variants": [{"regularizer": "baseline"}]}
    data["diffusion"] = {**data["diffusion"], "steps": DIFFUSION_STEPS}
    data["metrics"] = {**data["metrics"], "actors": 1}
    data["storage"]["checkpoint_every"] = EVERY
    return data


def _wait_for_checkpoints(tune_dir: Path, stage: str, count: int, driver: subprocess.Popen,
                          timeout: float = 600.0) -> None:
    """Until the trial of `stage` has written `count` checkpoints (i.e. it is mid-training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(tune_dir.glob(f"{stage}-*/*/checkpoint_*"))) >= count:
            return
        assert driver.poll() is None, f"the study ended before the {stage} trial checkpointed"
        time.sleep(0.05)
    raise TimeoutError(f"no {count} {stage} checkpoints in {timeout}s")


def test_trials_resume_on_another_node_after_their_node_is_lost(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(_study(tmp_path / "study")))
    study = load_study(study_file)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs no trial
    node = cluster.add_node(num_cpus=2)
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", str(study_file), "--no-analysis",
                               "--address", cluster.address], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        for stage, out in (("tokenizers", "tokenizers"), ("diffusion", "diffusion")):
            _wait_for_checkpoints(study.root / "tune", stage, 2, driver)
            replacement = cluster.add_node(num_cpus=2)  # the only other node: where the trial must resume
            assert not list((study.root / out).glob("*/result.json")), f"{stage} finished before the node loss"
            cluster.remove_node(node, allow_graceful=False)
            node = replacement
        code = driver.wait(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
        cluster.shutdown()
    assert code == 0, (tmp_path / "driver.log").read_text()[-3000:]

    tracker = Tracker(study.tracking_uri, study.experiment_name)
    runs = {stage: [r for r in tracker.runs() if r.data.tags[STAGE_TAG] == stage]
            for stage in ("tokenizer", "diffusion")}
    for stage, steps in (("tokenizer", TOKENIZER_STEPS), ("diffusion", DIFFUSION_STEPS)):
        assert len(runs[stage]) == 1, f"{stage}: {len(runs[stage])} runs"  # resumed into the same run
        run = runs[stage][0]
        assert run.info.status == "FINISHED"
        history = sorted(m.step for m in tracker.client.get_metric_history(run.info.run_id, "train/loss"))
        assert history == list(range(1, steps + 1)), f"{stage}: history not continuous"
