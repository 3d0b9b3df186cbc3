"""The study plan: earlier versions' keys still computed exactly (what `raysweep migrate` matches old stores
with), dependencies that respect the stages, and `status` counting exactly the planned jobs of an edited study."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from test_e2e_study import micro_study

from raysweep.config import load_study, parse_study
from raysweep.config.plan import (
    AnalysisJob,
    Curve,
    DiffusionJob,
    DiffusionMetricJob,
    LatentMetricJob,
    ModelMetricJob,
    StudyPlan,
    TokenizerJob,
    dataset_key,
    reference_key,
)
from raysweep.config.tiers import Tiers
from raysweep.engine.migrate import (
    legacy_diffusion_key,
    legacy_tokenizer_key,
    unmeasured_diffusion_key,
    unmeasured_evaluation_key,
    unversioned_diffusion_key,
    unversioned_evaluation_key,
    unversioned_reference_key,
    unversioned_tokenizer_key,
)
from raysweep.engine.status import study_status
from raysweep.engine.store import Store

ROOT = Path(__file__).resolve().parents[1]
# sha256 of the JSON list of (id, key) of every tokenizer and diffusion run, in study order, as computed by the
# payload functions of the runner before the plan existed (tokenizer_payload / diffusion_payload, commit 362c532),
# the keys of raysweep 0.1.0: a changed digest means `raysweep migrate` no longer finds those stores' results.
STORE_KEYS = {
    "experiments/quickstart.yaml": (12, "fc379c34a82d7debe76343fc3a2d4b911cec095741667f15a323d2f63b1c43de"),
    "experiments/paper/table1.yaml": (430, "c6ac8559782a4303c6027c159f168d017225826aaeba0e774fb77a9c22008e11"),
}


@pytest.mark.parametrize("path", sorted(STORE_KEYS))
def test_legacy_keys_equal_the_keys_of_existing_stores(path: str) -> None:
    study = load_study(ROOT / path)
    plan = StudyPlan.from_spec(study)
    keys = [(j.id, legacy_tokenizer_key(j)) if isinstance(j, TokenizerJob) else
            (j.id, legacy_diffusion_key(j, study.evaluation))
            for j in plan if isinstance(j, (TokenizerJob, DiffusionJob))]
    count, digest = STORE_KEYS[path]
    assert len(keys) == count
    assert hashlib.sha256(json.dumps(keys).encode()).hexdigest() == digest
    assert len({j.key for j in plan.diffusion}) == len(plan.diffusion)
    assert len({j.key for j in plan.tokenizers}) == len(plan.tokenizers)


# the same for raysweep 0.2.0's keys (before the reference network's code version), computed by the code of commit
# cdbe955: (id, key) of every tokenizer, (id, key, evaluation key) of every diffusion run, then the domain network's
# directory key.
UNVERSIONED_KEYS = {
    "experiments/quickstart.yaml": (13, "121aef02276bfb2f8809a6108f3faa767cf45f57ae1441387cf0d81e940dda93"),
    "experiments/paper/table1.yaml": (431, "41336491323fd62194b5e72d8591878b5b554bb93264942921fe1d302fe630ac"),
}


def _pinned(path: str, tokenizer_key: Any, diffusion_key: Any, evaluation_key: Any, reference: Any) -> tuple[int, str]:
    """(count, sha256 of the JSON list) of a study's keys under one release's formulas: (id, key) of every tokenizer,
    (id, key, evaluation key) of every diffusion run, then the domain network's directory key."""
    study = load_study(ROOT / path)
    samples = study.evaluation.checkpoint_samples
    keys: list[tuple[str, ...]] = [
        (j.id, tokenizer_key(j)) if isinstance(j, TokenizerJob) else
        (j.id, diffusion_key(j), evaluation_key(j, diffusion_key(j), samples))
        for j in StudyPlan.from_spec(study) if isinstance(j, (TokenizerJob, DiffusionJob))]
    keys.append(("reference", reference(study.reference, dataset_key(study.dataset))))
    return len(keys), hashlib.sha256(json.dumps(keys).encode()).hexdigest()


@pytest.mark.parametrize("path", sorted(UNVERSIONED_KEYS))
def test_unversioned_keys_equal_the_keys_of_0_2_0_stores(path: str) -> None:
    assert _pinned(path, unversioned_tokenizer_key, unversioned_diffusion_key, unversioned_evaluation_key,
                   unversioned_reference_key) == UNVERSIONED_KEYS[path]


# the same for raysweep 0.3.0's keys (before a diffusion run's training key held what it measures while training),
# computed by the code of commit bd6617d: (id, key) of every tokenizer, (id, key, evaluation key) of every diffusion
# run, then the domain network's directory key.
UNMEASURED_KEYS = {
    "experiments/quickstart.yaml": (13, "e3c8f7271876dc0b58eec088a5ecc296e3c3927c83a66a463004cdca5e1e9fda"),
    "experiments/paper/table1.yaml": (431, "4e638cd0ef63df5d1630ecfc23f46c72f4dae0e30f272dfa234aa26515d8d880"),
}


@pytest.mark.parametrize("path", sorted(UNMEASURED_KEYS))
def test_unmeasured_keys_equal_the_keys_of_0_3_0_stores(path: str) -> None:
    assert _pinned(path, lambda job: job.key, unmeasured_diffusion_key, unmeasured_evaluation_key,
                   reference_key) == UNMEASURED_KEYS[path]


def _keys(data: dict, **edits: dict) -> tuple[str, str]:
    """(training key, evaluation key) of the micro study's first diffusion run, each block of `edits` merged over the
    study's."""
    study = parse_study({**data, **{block: {**data.get(block, {}), **fields} for block, fields in edits.items()}})
    run = StudyPlan.from_spec(study).diffusion[0]
    return run.key, run.evaluation_key


def test_what_a_run_measures_while_it_trains_is_in_its_training_key(tmp_path: Path) -> None:
    """The convergence curve is measured during training: its samples and checkpoint interval are in the training
    key (a re-score cannot measure it again); the checkpoint interval alone (no curve, no tiers) only says where
    Tune checkpoints; the sampler only how the saved model is scored."""
    data = micro_study(tmp_path)
    assert StudyPlan.from_spec(parse_study(data)).diffusion[0].curve == Curve(32, 10)
    train, score = _keys(data)
    assert _keys(data, evaluation={"checkpoint_samples": 64})[0] != train
    assert _keys(data, evaluation={"checkpoint_samples": 64})[1] != score  # it holds the training key
    assert _keys(data, storage={"checkpoint_every": 5})[0] != train
    off, off_score = _keys(data, evaluation={"checkpoint_samples": 0})
    assert off != train and _keys(data, evaluation={"checkpoint_samples": 0}, storage={"checkpoint_every": 5}) == \
        (off, off_score)
    steps, steps_score = _keys(data, evaluation={"sampling_steps": 8})
    assert steps == train and steps_score != score


def _ladder_keys(data: dict, fidelity: dict | None = None, **edits: dict) -> tuple[str, str]:
    """(cheap run's, target run's) training keys of the first tokenizer under a backbone ladder with ASHA tiers."""
    ladder = {"backbone": "LightningDiT-T", "grace_fraction": 0.25, "reduction_factor": 2, **(fidelity or {})}
    diffusion = {**data["diffusion"], "allocation": {"mode": "proxy", "fidelity": ladder}}
    study = parse_study({**data, "diffusion": diffusion,
                         **{block: {**data.get(block, {}), **fields} for block, fields in edits.items()}})
    cheap, target = StudyPlan.from_spec(study).diffusion[:2]
    assert cheap.backbone == "LightningDiT-T" and target.backbone == "SiT-T"
    return cheap.key, target.key


def test_a_run_under_asha_has_its_rungs_in_its_training_key(tmp_path: Path) -> None:
    """A target run under multi-fidelity gFID measures its cheap gFID at its rungs (30 steps, a checkpoint every 10:
    rungs 1, 2 and the full tier at 3; a quarter of the samples), not a curve; the ladder's cheap run runs alone,
    with the curve."""
    data = micro_study(tmp_path)
    plan = StudyPlan.from_spec(parse_study({**data, "diffusion": {**data["diffusion"], "allocation": {
        "mode": "proxy", "fidelity": {"backbone": "LightningDiT-T", "grace_fraction": 0.25, "reduction_factor": 2}}}}))
    cheap, target = plan.diffusion[:2]
    assert (cheap.curve, cheap.tiers) == (Curve(32, 10), None)
    assert target.curve is None and target.tiers == Tiers((1, 2, 3), 16, 10)
    assert target.inputs["tiers"] == {"rungs": [1, 2, 3], "cheap_samples": 16, "every": 10}
    base = _ladder_keys(data)
    rungs = _ladder_keys(data, {"grace_fraction": 0.5})  # rungs 2, 3
    assert rungs[0] == base[0] and rungs[1] != base[1]
    every = _ladder_keys(data, storage={"checkpoint_every": 15})  # rungs 1, 2 of 15 steps each
    assert every[0] != base[0] and every[1] != base[1]
    samples = _ladder_keys(data, evaluation={"checkpoint_samples": 64})  # the curve's: the cheap run's only
    assert samples[0] != base[0] and samples[1] == base[1]


def test_dependencies_point_backwards_and_follow_the_stages(tmp_path: Path) -> None:
    study = parse_study(micro_study(tmp_path))  # metrics: viv, sec (latents), equivariance, velocity_fisher
    plan = StudyPlan.from_spec(study)
    seen: set[tuple[str, str]] = set()
    for job in plan:
        assert set(job.deps) <= seen, job.ref  # a topological order
        seen.add(job.ref)
    assert len(seen) == len(plan)  # refs are unique although ids repeat across stages
    counts = {t.__name__: len(plan.of(t)) for t in (TokenizerJob, LatentMetricJob, ModelMetricJob, DiffusionJob,
                                                     DiffusionMetricJob, AnalysisJob)}
    assert counts == {"TokenizerJob": 2, "LatentMetricJob": 2, "ModelMetricJob": 2, "DiffusionJob": 2,
                      "DiffusionMetricJob": 2, "AnalysisJob": 1}
    run = plan.diffusion[1]
    assert run.id == f"{study.tokenizer_trials[1].id}/SiT-T/0"
    assert set(run.deps) == {("tokenizer", run.tokenizer.id), ("latent_metrics", run.tokenizer.id),
                             ("model_metrics", run.tokenizer.id)}
    assert plan.of(LatentMetricJob)[0].names == ("viv", "sec")
    assert plan.of(ModelMetricJob)[0].names == ("equivariance",)
    assert set(plan.of(AnalysisJob)[0].deps) == seen - {("analysis", "analysis")}
    assert not StudyPlan.from_spec(study, analyze=False).of(AnalysisJob)


def test_status_counts_only_the_planned_jobs_of_an_edited_study(tmp_path: Path) -> None:
    data = micro_study(tmp_path / "store")
    data["diffusion"] = {**data["diffusion"], "seeds": [0, 1]}
    before = parse_study(data)
    store = Store(before.root)
    for job in StudyPlan.from_spec(before):  # everything the first version planned is finished
        if store.marker(job) is not None:
            store.finish(job, {"run_id": "r", "metrics": {}, "id": job.id})
    status = study_status(before)
    assert (status["diffusion_trials"], status["diffusion_finished"]) == (4, 4)

    data["diffusion"]["seeds"] = [1, 2]  # seed 0 dropped (its results are stale), seed 2 added
    data["tokenizers"]["variants"] = data["tokenizers"]["variants"][:1]
    after = parse_study(data)
    status = study_status(after)
    assert (status["diffusion_trials"], status["diffusion_finished"]) == (2, 1)
    assert [t["id"] for t in status["tokenizers"]] == [after.tokenizer_trials[0].id]
    assert status["tokenizers"][0]["trained"] and status["tokenizers"][0]["metrics"]
    assert len(list((before.root / "diffusion").glob("*/result.json"))) == 4  # on disk, but not planned
    assert "diffusion: 1/2 finished" in study_status(after, text=True)
