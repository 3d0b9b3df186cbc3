"""A longer diffusion run continues a finished shorter one (`raysweep.engine.continuation.py`): which stored runs
qualify, and, on a real micro study whose `diffusion.steps` doubles, that the continued run equals a run trained
straight to the new step count (loss history and EMA weights, computed here independently in-process)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from local_ray import local_ray
from test_e2e_study import micro_study

from raysweep.config import parse_study
from raysweep.config.plan import StudyPlan
from raysweep.engine.checkpointing import STATE_FILE
from raysweep.engine.continuation import CONTINUED_FROM, find_continuation, shorter_by_steps
from raysweep.engine.events import JobEvent, JobQueued, JobStarted
from raysweep.engine.status import status_lines, study_status
from raysweep.engine.store import Store
from raysweep.tracking import Tracker
from raysweep.tracking.keys import CHECKPOINT_GFID, CONTINUED_TAG, mlflow_name
from raysweep.tracking.table import SUPERSEDED_STATUS, study_table

PLANNED = {"trial": {"steps": 40, "lr": 1e-3}, "seed": 0, "tokenizer": "t", "curve": {"samples": 8, "every": 10}}


def _with_steps(steps: int, **changes: Any) -> dict[str, Any]:
    return {**PLANNED, "trial": {**PLANNED["trial"], "steps": steps}, **changes}


def test_only_the_same_training_with_fewer_steps_is_continued() -> None:
    assert shorter_by_steps(_with_steps(20), PLANNED) == 20
    assert shorter_by_steps(_with_steps(40), PLANNED) is None  # the same run
    assert shorter_by_steps(_with_steps(60), PLANNED) is None  # a longer one
    assert shorter_by_steps(_with_steps(20, seed=1), PLANNED) is None
    assert shorter_by_steps(_with_steps(20, curve={"samples": 16, "every": 10}), PLANNED) is None
    assert shorter_by_steps({**_with_steps(20), "trial": {"steps": 20, "lr": 2e-3}}, PLANNED) is None
    assert shorter_by_steps(None, PLANNED) is None


def _stored(store: Store, key: str, inputs: dict[str, Any], state_step: int | None, experiment: str | None = None,
            **extra: Any) -> None:
    """A finished diffusion result, and (state_step) its Tune experiment's last checkpoint at that step."""
    store.mark_done(store.diffusion(key), {"inputs": inputs, "run_id": f"run-{key}", **extra})
    if state_step is not None:
        for number, step in ((0, state_step - 10), (1, state_step)):
            directory = store.tune / f"diffusion-{experiment or key}" / "trial" / f"checkpoint_00000{number}"
            directory.mkdir(parents=True)
            torch.save({"step": step}, directory / STATE_FILE)


def test_the_longest_qualifying_run_with_its_final_state_is_found(tmp_path: Path) -> None:
    job = StudyPlan.from_spec(parse_study(micro_study(tmp_path / "s"))).diffusion[0]
    store = Store(tmp_path / "store")
    inputs = dict(job.inputs)
    shorter = {**inputs, "trial": {**inputs["trial"], "steps": 20}}
    assert find_continuation(job, store, every=10) is None
    _stored(store, "a", {**inputs, "trial": {**inputs["trial"], "steps": 10}}, 10)
    _stored(store, "b", shorter, 20, experiment="old-b", migrated_from="old-b")  # a migrated run's experiment
    _stored(store, "c", {**inputs, "trial": {**inputs["trial"], "steps": 25}}, 25)  # off the checkpoint grid
    _stored(store, "d", {**inputs, "trial": {**inputs["trial"], "steps": 20}}, None)  # its checkpoints are gone
    _stored(store, "e", {**inputs, "trial": {**inputs["trial"], "steps": 29}}, 29, stopped={"rung": 1})
    found = find_continuation(job, store, every=10)
    assert found is not None and (found.key, found.steps, found.run_id) == ("b", 20, "run-b")
    assert found.state_file.parent.name == "checkpoint_000001"
    assert find_continuation(job, store, every=20) is not None  # 20 is on a grid of 20, 10 on none: b again
    _stored(store, "f", {**inputs, "trial": {**inputs["trial"], "steps": 30}}, 20)  # last checkpoint not its end
    assert find_continuation(job, store, every=10).key == "b"  # type: ignore[union-attr]


@pytest.mark.e2e
def test_a_longer_run_continues_the_shorter_one_bit_exact(tmp_path: Path) -> None:
    from raysweep.diffusion import DiffusionTrainer, build_backbone
    from raysweep.diffusion.velocity_model import load_velocity_model
    from raysweep.runner import run_study
    from raysweep.stages.diffusion import load_latents

    data = micro_study(tmp_path / "study")
    data["tokenizers"]["variants"] = [{"regularizer": "baseline"}]
    data["metrics"] = {"names": ["viv"], "actors": 1, "batch_size": 32}
    data["evaluation"].update(scorers=[], sampler_check=[])
    data["diffusion"]["steps"] = 20
    longer = {**data, "diffusion": {**data["diffusion"], "steps": 40}}
    with local_ray():
        assert not run_study(parse_study(data)).failed
        stale = study_status(parse_study(longer))["stale"]
        assert [(s["id"], s["fields"], s["continues"]) for s in stale] == [("baseline/SiT-T/0", ["trial.steps"], 20)]
        assert "(continued from its step-20 state by the next run)" in "\n".join(status_lines({"stale": stale,
            "assumed_at_migration": [], "to_migrate": 0}))
        events: list[JobEvent] = []
        assert not run_study(parse_study(longer), sink=events.append).failed
    queued = [e for e in events if isinstance(e, JobQueued | JobStarted) and e.stage == "diffusion"]
    assert [(type(e).__name__, e.total, e.done) for e in queued] == [("JobQueued", 40, 20), ("JobStarted", 40, 20)]

    study = parse_study(longer)
    store, (short_job,), (job,) = Store(study.root), StudyPlan.from_spec(parse_study(data)).diffusion, \
        StudyPlan.from_spec(study).diffusion
    result = json.loads((store.diffusion(job.key) / "result.json").read_text())
    short_run = store.done(short_job)["run_id"]  # type: ignore[index]
    assert result[CONTINUED_FROM] == {"key": short_job.key, "run_id": short_run, "steps": 20}
    tracker = Tracker(study.tracking_uri, study.experiment_name)
    client = tracker.client

    def history(run_id: str, key: str) -> dict[int, float]:
        return {m.step: m.value for m in client.get_metric_history(run_id, mlflow_name(key))}

    run_id = result["run_id"]
    assert client.get_run(run_id).data.tags[CONTINUED_TAG] == short_run
    losses, curve, short_curve = history(run_id, "train/loss"), history(run_id, CHECKPOINT_GFID), \
        history(short_run, CHECKPOINT_GFID)
    assert sorted(curve) == [10, 20, 30, 40] and {s: curve[s] for s in short_curve} == short_curve

    # the same run trained straight to 40 steps, in this process, as the trial builds it
    torch.manual_seed(job.seed)
    batch, meta = load_latents(store, job.tokenizer.key, "train")
    c, h, _ = meta.shape
    trial = job.trial
    model = build_backbone(trial.backbone, in_channels=c, input_size=h, num_classes=study.dataset.num_classes,
                           patch_size=trial.patch_size, label_dropout=trial.label_dropout)
    trainer = DiffusionTrainer(model, seed=job.seed, **trial.trainer_kwargs())
    straight: dict[int, float] = {}
    trainer.fit(torch.from_numpy(meta.standardise(batch.latent)), torch.from_numpy(batch.label.astype(np.int64)),
                trial.steps, trial.batch_size, on_log=lambda step, logs: straight.__setitem__(step, logs["loss"]))
    assert losses == straight  # steps 1-20 copied from the shorter run, 21-40 trained on from its state
    saved = load_velocity_model(store.velocity_model_file(job.key)).state_dict()
    for name, value in trainer.ema.state_dict().items():
        assert torch.equal(saved[name], value), name

    table = study_table(tracker, planned=StudyPlan.from_spec(study).keys)  # the 20-step run is superseded
    status = dict(zip(table["diffusion_run_id"], table["status"], strict=True))
    assert status == {run_id: "FINISHED", short_run: SUPERSEDED_STATUS}
