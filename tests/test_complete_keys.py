"""Complete keys, provenance and migration without running a stage: which planned jobs an edit leaves finished, what
`status` calls stale (and why), and stores written by earlier versions refused by `run` and migrated without
retraining: raysweep 0.1.0's (tests/fixtures/micro_store_0_1_0: its result.json files, made by commit 8e5a5a3 from
the micro study) and 0.2.0's (tests/fixtures/micro_store_0_2_0: every planned job's marker as commit cdbe955's
`Store.finish` writes it, before the reference network's code version was in the keys, and the domain network's
directory with a stand-in weights file) and 0.3.0's (tests/fixtures/micro_store_0_3_0: the same, written by commit
bd6617d, before a diffusion run's training key held what it measures while training)."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_e2e_study import micro_study

from raysweep.config import parse_study
from raysweep.config import plan as plan_module
from raysweep.config.errors import ConfigError
from raysweep.config.plan import (
    DiffusionJob,
    DiffusionMetricJob,
    LatentMetricJob,
    ModelMetricJob,
    StudyPlan,
    TokenizerJob,
    dataset_key,
    reference_key,
)
from raysweep.engine.migrate import ASSUMED, MIGRATED_FROM, migrate_store, needs_migration
from raysweep.engine.status import study_status
from raysweep.engine.store import Store
from raysweep.metrics.smoothness import SpectralEnergy

FIXTURE = Path(__file__).parent / "fixtures" / "micro_store_0_1_0"
FIXTURE_0_2 = Path(__file__).parent / "fixtures" / "micro_store_0_2_0"
FIXTURE_0_3 = Path(__file__).parent / "fixtures" / "micro_store_0_3_0"


def _finished(data: dict[str, Any]) -> Store:
    """A store in which every job of the study `data` is finished (markers as the stages write them)."""
    study = parse_study(data)
    store = Store(study.root)
    for job in StudyPlan.from_spec(study):
        if store.marker(job) is not None:
            store.finish(job, {"run_id": "r", "metrics": {}, "id": job.id})
    return store


def _unfinished(data: dict[str, Any]) -> dict[str, list[str]]:
    """Stage -> ids of the study's jobs its store does not hold finished."""
    study = parse_study(data)
    store, out = Store(study.root), {}
    for job in StudyPlan.from_spec(study):
        if store.marker(job) is not None and store.done(job) is None:
            out.setdefault(job.stage, []).append(job.id)
    return out


def _stale(data: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {(s["stage"], s["id"]): s["fields"] for s in study_status(parse_study(data))["stale"]}


def test_an_edit_unfinishes_exactly_the_jobs_whose_inputs_it_changes(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    base = micro_study(tmp_path / "study")
    _finished(base)
    assert _unfinished(base) == {} and _stale(base) == {}

    added = copy.deepcopy(base)
    added["metrics"]["names"].append("lnc")  # a latent metric: the latent-metric jobs only, for lnc only
    assert _unfinished(added) == {"latent_metrics": ["baseline", "lcr"]}
    job = StudyPlan.from_spec(parse_study(added)).of(LatentMetricJob)[0]
    assert job.missing(Store(tmp_path / "study").found(job)) == ("lnc",)

    param = copy.deepcopy(base)
    param["metrics"]["params"]["velocity_fisher"]["t_points"] = 4
    assert _unfinished(param) == {"diffusion_metrics": ["baseline/SiT-T/0", "lcr/SiT-T/0"]}
    assert _stale(param)[("diffusion_metrics", "lcr/SiT-T/0")] == ["velocity_fisher.params.t_points"]

    monkeypatch.setattr(SpectralEnergy, "version", 2)  # sec's definition changed
    job = StudyPlan.from_spec(parse_study(base)).of(LatentMetricJob)[1]
    assert job.missing(Store(tmp_path / "study").found(job)) == ("sec",)
    assert _stale(base)[("latent_metrics", "lcr")] == ["sec.version"]
    monkeypatch.undo()

    scales = copy.deepcopy(base)
    scales["evaluation"]["cfg_scales"] = [1.0, 1.5]  # re-scored: the same training key, another evaluation key
    assert _unfinished(scales) == {"diffusion": ["baseline/SiT-T/0", "lcr/SiT-T/0"]}
    before, after = (StudyPlan.from_spec(parse_study(d)).diffusion[0] for d in (base, scales))
    assert before.key == after.key and before.evaluation_key != after.evaluation_key
    assert _stale(scales)[("diffusion", "baseline/SiT-T/0")] == ["evaluation.cfg_scales"]

    size = copy.deepcopy(base)
    size["dataset"]["image_size"] = 32  # every tokenizer retrains, and all that follows from it
    unfinished = _unfinished(size)
    assert unfinished["tokenizer"] == ["baseline", "lcr"] and set(unfinished) == {
        "tokenizer", "latent_metrics", "model_metrics", "diffusion", "diffusion_metrics"}
    stale = _stale(size)
    assert stale[("tokenizer", "baseline")] == ["dataset.image_size"]
    assert stale[("diffusion", "lcr/SiT-T/0")] == ["tokenizer"]
    assert "stale  tokenizer 'lcr': dataset.image_size changed" in study_status(parse_study(size), text=True)


def test_the_reference_networks_code_version_is_in_its_key_and_every_key_below_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new version of the domain network's code trains it anew (another directory) and retrains the tokenizers
    (rFID and the perceptual fallback use it), so everything below them; `status` names the field."""
    base = micro_study(tmp_path / "study")
    _finished(base)
    study = parse_study(base)
    before = reference_key(study.reference, dataset_key(study.dataset))
    monkeypatch.setattr(plan_module, "REFERENCE_CODE_VERSION", plan_module.REFERENCE_CODE_VERSION + 1)
    assert reference_key(study.reference, dataset_key(study.dataset)) != before
    unfinished = _unfinished(base)
    assert unfinished["tokenizer"] == ["baseline", "lcr"] and set(unfinished) == {
        "tokenizer", "latent_metrics", "model_metrics", "diffusion", "diffusion_metrics"}
    stale = _stale(base)
    assert stale[("tokenizer", "lcr")] == ["reference.version"]
    assert stale[("diffusion", "lcr/SiT-T/0")] == ["tokenizer"]  # its training key holds the tokenizer's


def test_results_record_their_inputs_and_the_package_version(tmp_path: Path) -> None:
    store = _finished(micro_study(tmp_path / "study"))
    plan = StudyPlan.from_spec(parse_study(micro_study(tmp_path / "study")))
    tok = json.loads((store.marker(plan.tokenizers[0]) / "result.json").read_text())
    assert tok["inputs"]["dataset"]["image_size"] == 16 and tok["inputs"]["trial"]["regularizer"] == "baseline"
    assert tok["raysweep_version"] and tok["inputs"]["version"] == 1
    run = store.done(plan.diffusion[0])
    assert run["evaluation_inputs"]["evaluation"]["cfg_scales"] == [1.0, 2.0]
    fisher = store.done(plan.of(DiffusionMetricJob)[0])["metrics"]["velocity_fisher"]["inputs"]
    assert fisher["params"]["t_points"] == 5 and fisher["upstream"] == plan.diffusion[0].key


def _old_store(tmp_path: Path, fixture: Path = FIXTURE) -> tuple[dict[str, Any], Store]:
    """The micro study over a copy of a committed store of an earlier release (0.1.0 by default)."""
    shutil.copytree(fixture, tmp_path / "study")
    return micro_study(tmp_path / "study"), Store(tmp_path / "study")


def _migrates_whole(study: Any, plan: StudyPlan, store: Store,
                    moved: tuple[str, ...] = ("diffusion", "diffusion", "tokenizer", "tokenizer")) -> None:
    """Every result of the old store is under the current keys once the `moved` ones (by default its two
    tokenizers and two diffusion runs) are moved, metric markers with them, and migrating again moves nothing."""
    moves = migrate_store(study, plan, store)
    assert sorted(m.job.stage for m in moves) == list(moved)
    assert all(store.done(j) is not None for j in plan if store.marker(j) is not None)
    needs_migration(study, plan, store)  # nothing left to migrate
    assert migrate_store(study, plan, store) == []  # idempotent


def test_a_store_of_the_previous_version_is_refused_then_migrated_without_retraining(tmp_path: Path) -> None:
    from raysweep.runner import run_study

    data, store = _old_store(tmp_path)
    study = parse_study(data)
    plan = StudyPlan.from_spec(study)
    assert all(store.done(j) is None for j in plan if store.marker(j) is not None)  # nothing reused silently
    with pytest.raises(ConfigError, match=r"run `raysweep migrate .*` to reuse them without retraining"):
        run_study(study)  # refused before anything is written
    assert not (tmp_path / "study" / "mlflow.db").exists()

    _migrates_whole(study, plan, store)

    tok = store.done(plan.tokenizers[0])
    assert tok[ASSUMED] == ["dataset", "reference", "version"] and tok[MIGRATED_FROM] == plan.tokenizers[0].trial.key()
    assert tok["metrics"]["recon/psnr"] > 0  # the old values, kept
    status = study_status(study)
    assert status["jobs_finished"] == status["jobs"] - 1  # all but the analysis, never cached
    assumed = {(a["stage"], a["id"]): a["fields"] for a in status["assumed_at_migration"]}
    assert assumed[("latent_metrics", "lcr")] == ["viv.params", "viv.version", "sec.params", "sec.version"]
    assert assumed[("diffusion", "lcr/SiT-T/0")] == ["version", "evaluation.scorer", "curve", "tiers"]
    assert status["stale"] == []


def test_migration_reuses_only_what_the_old_keys_of_the_current_study_match(tmp_path: Path) -> None:
    data, store = _old_store(tmp_path)
    data["evaluation"]["cfg_scales"] = [1.0, 1.5]  # the old diffusion key covered the evaluation: no match
    data["metrics"]["names"].append("lnc")  # never computed by the old store
    study = parse_study(data)
    plan = StudyPlan.from_spec(study)
    assert sorted(m.job.stage for m in migrate_store(study, plan, store)) == ["tokenizer", "tokenizer"]
    assert all(store.done(j) is not None for j in plan.of(TokenizerJob) + plan.of(ModelMetricJob))
    assert [store.done(j) for j in plan.of(DiffusionJob)] == [None, None]
    latent = plan.of(LatentMetricJob)[0]
    assert latent.missing(store.found(latent)) == ("lnc",)  # viv and sec migrated, lnc to compute


def test_a_run_builds_its_plan_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` makes the plan once and hands it to the scheduler, the gate and the analysis (a migrated store: every
    job but the analysis found finished; run in this process)."""
    from raysweep.engine.executors import LocalExecutor
    from raysweep.engine.study_plan import plan_study
    from raysweep.runner import run_study

    data, store = _old_store(tmp_path)
    study = parse_study(data)
    migrate_store(study, plan_study(study, store), store)
    builds: list[tuple[Any, ...]] = []
    build = StudyPlan.from_spec.__func__  # type: ignore[attr-defined]

    def counted(cls: type[StudyPlan], *args: Any, **kwargs: Any) -> StudyPlan:
        builds.append(args)
        return build(cls, *args, **kwargs)

    monkeypatch.setattr(StudyPlan, "from_spec", classmethod(counted))
    result = run_study(study, executor=LocalExecutor())
    assert not result.failed and len(result.finished) == 11 and result.report  # 10 found finished, the analysis
    assert len(builds) == 1


def test_a_store_of_0_2_0_is_refused_then_migrated_with_the_reference_version_assumed(tmp_path: Path) -> None:
    data, store = _old_store(tmp_path, FIXTURE_0_2)
    study = parse_study(data)
    plan = StudyPlan.from_spec(study)
    assert all(store.done(j) is None for j in plan if store.marker(j) is not None)  # nothing reused silently
    with pytest.raises(ConfigError, match=r"written by raysweep 0\.2\.0 under its keys .*run `raysweep migrate "
                                          r".*` to reuse them without retraining"):
        needs_migration(study, plan, store)

    _migrates_whole(study, plan, store)  # metric markers re-keyed

    tok = store.done(plan.tokenizers[1])
    assert tok[ASSUMED] == ["reference.version"] and tok["metrics"]["recon/psnr"] == 21.5  # the old values, kept
    assert tok["inputs"]["reference"]["version"] == plan_module.REFERENCE_CODE_VERSION
    status = study_status(study)
    assert status["jobs_finished"] == status["jobs"] - 1 and status["stale"] == [] and status["to_migrate"] == 0
    assumed = {(a["stage"], a["id"]): a["fields"] for a in status["assumed_at_migration"]}
    assert assumed[("diffusion", "lcr/SiT-T/0")] == ["tokenizer", "evaluation.scorer.version", "curve", "tiers"]
    assert assumed[("latent_metrics", "lcr")] == ["viv.upstream", "sec.upstream"]
    assert assumed[("diffusion_metrics", "lcr/SiT-T/0")] == ["velocity_fisher.upstream"]

    reference = store.reference(reference_key(study.reference, dataset_key(study.dataset)))  # the same weights
    done = Store.result(reference)
    assert done is not None and done[ASSUMED] == ["version"] and Path(done["weights"]) == reference / "domain.pt"
    assert Path(done["weights"]).read_bytes() == b"domain network weights (stand-in)"
    assert sorted(p.name for p in (tmp_path / "study" / "reference").iterdir()) == [reference.name]


def test_a_0_2_0_run_scored_under_other_evaluation_settings_is_moved_and_re_scored(tmp_path: Path) -> None:
    data, store = _old_store(tmp_path, FIXTURE_0_2)
    data["evaluation"]["cfg_scales"] = [1.0, 1.5]  # edited since: the trained models are kept, their scores are not
    study = parse_study(data)
    plan = StudyPlan.from_spec(study)
    assert sorted(m.job.stage for m in migrate_store(study, plan, store)) == ["diffusion", "diffusion", "tokenizer",
                                                                              "tokenizer"]
    assert [store.done(j) for j in plan.diffusion] == [None, None]
    assert all(store.found(j) is not None for j in plan.diffusion)  # found under the new training key: re-scored
    assert _stale(data)[("diffusion", "lcr/SiT-T/0")] == ["evaluation.cfg_scales", "evaluation.checkpoint_samples",
                                                          "scorer.version", "training"]


def test_a_store_of_0_3_0_is_refused_then_migrated_with_what_its_runs_measured_assumed(tmp_path: Path) -> None:
    """0.3.0 keyed no run by its convergence curve: its tokenizers (and their metrics) are current, its diffusion
    runs move to keys with the curve (32 samples every 10 steps, assumed), scored under the same evaluation."""
    data, store = _old_store(tmp_path, FIXTURE_0_3)
    study = parse_study(data)
    plan = StudyPlan.from_spec(study)
    assert all(store.done(j) is not None for j in plan.tokenizers)
    assert all(store.done(j) is None for j in plan.of(DiffusionJob) + plan.of(DiffusionMetricJob))
    with pytest.raises(ConfigError, match=r"2 result\(s\) .* written by raysweep 0\.3\.0 under its keys .*run "
                                          r"`raysweep migrate .*` to reuse them without retraining"):
        needs_migration(study, plan, store)
    reference = sorted((tmp_path / "study" / "reference").rglob("*"))

    _migrates_whole(study, plan, store, moved=("diffusion", "diffusion"))

    run = store.done(plan.diffusion[1])
    assert run[ASSUMED] == ["curve", "tiers"] and run["metrics"] == {"gen/gfid": 90.0}  # the old values, kept
    assert run["inputs"]["curve"] == {"samples": 32, "every": 10} and run["inputs"]["tiers"] is None
    assert run["evaluation_key"] == plan.diffusion[1].evaluation_key  # scored under the same evaluation
    status = study_status(study)
    assert status["jobs_finished"] == status["jobs"] - 1 and status["stale"] == [] and status["to_migrate"] == 0
    assumed = {(a["stage"], a["id"]): a["fields"] for a in status["assumed_at_migration"]}
    assert assumed == {("diffusion", "baseline/SiT-T/0"): ["curve", "tiers"],
                       ("diffusion", "lcr/SiT-T/0"): ["curve", "tiers"],
                       ("diffusion_metrics", "baseline/SiT-T/0"): ["velocity_fisher.upstream"],
                       ("diffusion_metrics", "lcr/SiT-T/0"): ["velocity_fisher.upstream"]}
    assert sorted((tmp_path / "study" / "reference").rglob("*")) == reference  # already under its key


def test_a_0_3_0_run_is_re_scored_after_a_sampler_edit_and_retrained_after_a_curve_edit(tmp_path: Path) -> None:
    """The sampler only scores the saved model: the run moves and is scored again. The curve's samples were
    measured while training (recorded in the run's evaluation inputs): a run with other samples than the study's
    is not reused, nor does `run` refuse the store for it."""
    data, store = _old_store(tmp_path, FIXTURE_0_3)
    data["evaluation"]["sampling_steps"] = 8
    study = parse_study(data)
    plan = StudyPlan.from_spec(study)
    assert sorted(m.job.stage for m in migrate_store(study, plan, store)) == ["diffusion", "diffusion"]
    assert [store.done(j) for j in plan.diffusion] == [None, None]
    assert all(store.found(j) is not None for j in plan.diffusion)  # found under the new training key: re-scored
    assert _stale(data)[("diffusion", "lcr/SiT-T/0")] == ["evaluation.checkpoint_samples",
                                                          "evaluation.sampling_steps", "training"]

    data, store = _old_store(tmp_path / "curve", FIXTURE_0_3)
    data["evaluation"]["checkpoint_samples"] = 64
    study = parse_study(data)
    plan = StudyPlan.from_spec(study)
    needs_migration(study, plan, store)  # nothing it could reuse
    assert migrate_store(study, plan, store) == []
    assert [store.found(j) for j in plan.diffusion] == [None, None]  # trained again under the new key
