"""A diffusion trial's Tune config is its typed input (no payload dict): it survives the pickling Tune gives it (the
experiment state, a cohort's configs in the object store) with every field the trial reads, and flattens to the one
key Tune compares when a restore is given the config again."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ray import cloudpickle
from ray.tune.utils import flatten_dict
from test_e2e_study import micro_study

from raysweep.config import parse_study
from raysweep.config.plan import DiffusionJob, StudyPlan
from raysweep.config.tiers import Tiers
from raysweep.engine.context import TrialContext
from raysweep.stages.diffusion import INPUT, DiffusionTrialInput


def test_a_diffusion_trials_typed_config_survives_tunes_pickling(tmp_path: Path) -> None:
    study = parse_study(micro_study(tmp_path))
    job = StudyPlan.from_spec(study).of(DiffusionJob)[0]
    ctx = TrialContext(str(tmp_path), f"sqlite:///{tmp_path / 'mlflow.db'}", "micro", "study-run", "data", 4, 16,
                       "domain", None, 1, log_every=10)
    job = dataclasses.replace(job, tiers=Tiers((1, 3), 32, 10))
    given = DiffusionTrialInput(job, "tokenizer-run", study.evaluation, ctx)
    back = cloudpickle.loads(cloudpickle.dumps(given.config()))[INPUT]
    assert back == given
    assert back.job.record() == job.record()  # the inputs and evaluation inputs (left out of the job's equality)
    assert back.evaluation.model_dump() == study.evaluation.model_dump()
    assert back.job.tiers is not None and back.job.tiers.rung(3) == 2 and back.job.curve == job.curve
    assert back.ctx.store.diffusion(job.key) == ctx.store.diffusion(job.key)
    assert list(flatten_dict(given.config())) == [INPUT]
