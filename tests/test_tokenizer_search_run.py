"""`tokenizers.search` in `raysweep run`: a real Ray Tune search on a local Ray cluster trains `num_samples` real
tokenizers through the tokenizer stage; only the best `confirm` feasible ones get diffusion runs; a rerun trains
nothing. Bad search blocks are one-line config errors naming the key."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from local_ray import local_ray
from test_e2e_study import micro_study

from raysweep.config import parse_study
from raysweep.config.errors import ConfigError
from raysweep.config.plan import ConfirmationSlot, StudyPlan, TokenizerSearchJob
from raysweep.engine.events import JobEvent, JobFinished, JobStarted
from raysweep.engine.store import Store
from raysweep.engine.study_plan import plan_study
from raysweep.tracking import Tracker
from raysweep.tracking.keys import (
    SEARCH_CHOSEN_TAG,
    SEARCH_CONFIRMED_TAG,
    SEARCH_FEASIBLE,
    SEARCH_SCORE,
    SEARCH_STAGE,
    SEARCH_TRIALS_TAG,
)

OBJECTIVE, BOUND = "latent/velocity/viv", 11.8  # measured: one draw (the largest KL weight) reaches 11.4 dB, three 12.2


def search_study(root: Path, **search: Any) -> dict[str, Any]:
    """The micro study with one searched domain (the KL weight over seven decades: large weights wreck the
    reconstruction, so the PSNR constraint binds for some draws)."""
    data = micro_study(root)
    data["tokenizers"] = {"architecture": "conv-tiny", "latent": "f2d4", "steps": 30, "batch_size": 16,
                          "regularizer": "baseline", "kl_weight": {"loguniform": [1.0e-6, 10.0]},
                          "search": {"objective": OBJECTIVE, "algorithm": "random", "num_samples": 4,
                                     "constraint": f"recon/psnr >= {BOUND}", "confirm": 2, **search}}
    data["metrics"] = {"names": ["viv", "sec"], "actors": 1, "batch_size": 32}
    data["evaluation"]["cfg_scales"] = [1.0]
    return data


@pytest.mark.e2e
def test_search_trains_num_samples_tokenizers_confirms_the_best_feasible_and_reruns_nothing(tmp_path: Path) -> None:
    from raysweep.runner import run_study

    # mode max: the draw that misses the constraint has the highest VIV, so only the constraint keeps it out
    study = parse_study(search_study(tmp_path / "study", mode="max"))
    before = StudyPlan.from_spec(study)
    assert [j.stage for j in before] == ["tokenizer_search", "diffusion", "diffusion", "analysis"]
    assert not before.tokenizers and len(before.of(ConfirmationSlot)) == 2
    with local_ray():
        events: list[JobEvent] = []
        result = run_study(study, sink=events.append)
        assert not result.failed, result.failed
        rerun: list[JobEvent] = []
        again = run_study(study, sink=rerun.append)
        # a driver killed after the Tune search ended but before the search job's marker: the rerun restores the
        # search experiment and writes the same result, training nothing
        marker = Store(study.root).marker(StudyPlan.from_spec(study).search) / "result.json"
        stored = json.loads(marker.read_text())
        marker.unlink()
        restored: list[JobEvent] = []
        assert not run_study(study, sink=restored.append).failed
        assert json.loads(marker.read_text())["trials"] == stored["trials"]
        assert {e.stage for e in restored if isinstance(e, JobStarted)} == {"tokenizer_search", "analysis"}

    tracker = Tracker(study.tracking_uri, study.experiment_name)
    tokenizers = {r.data.tags["tokenizer_id"]: r for r in tracker.runs("tokenizer")}
    assert len(tokenizers) == 4  # num_samples real tokenizers (continuous draws never repeat)
    (search_run,) = tracker.runs(SEARCH_STAGE)
    assert sorted(search_run.data.tags[SEARCH_TRIALS_TAG].split(",")) == sorted(tokenizers)

    # the choice, recomputed from what MLflow tracked: feasible = the constraint holds; confirmed = the two
    # feasible tokenizers of highest objective, best first
    metrics = {t: Tracker.metrics_of(r) for t, r in tokenizers.items()}
    feasible = {t for t, m in metrics.items() if m["recon/psnr"] >= BOUND}
    assert {t for t, m in metrics.items() if m[SEARCH_FEASIBLE] == 1.0} == feasible
    assert 0 < len(feasible) < 4, {t: m["recon/psnr"] for t, m in metrics.items()}  # the constraint binds
    for t in feasible:
        assert metrics[t][SEARCH_SCORE] == pytest.approx(-metrics[t][OBJECTIVE])
    expected = sorted(feasible, key=lambda t: -metrics[t][OBJECTIVE])[:2]
    assert max(metrics, key=lambda t: metrics[t][OBJECTIVE]) not in feasible  # it would win unconstrained
    assert search_run.data.tags[SEARCH_CHOSEN_TAG].split(",") == expected
    assert {t for t, r in tokenizers.items() if r.data.tags[SEARCH_CONFIRMED_TAG] == "true"} == set(expected)

    diffusion = tracker.runs("diffusion")
    assert sorted(r.data.tags["tokenizer_id"] for r in diffusion) == sorted(expected)  # only confirmed ones
    after = plan_study(study)
    assert not after.of(ConfirmationSlot) and len(after.tokenizers) == 4
    assert {j.tokenizer.id for j in after.diffusion} == set(expected)
    assert all(j.deps == (("tokenizer_search", "search"),) for j in after.tokenizers)

    started = {(e.stage, e.job_id) for e in events if isinstance(e, JobStarted)}
    assert ("tokenizer_search", "search") in started
    assert {j for s, j in started if s == "tokenizer"} == set(tokenizers)  # relayed from the search trials
    assert result.report is not None

    # a rerun of the finished study: nothing trained, scored or tracked anew
    assert not again.failed and not [e for e in rerun if isinstance(e, JobStarted) and e.stage != "analysis"]
    cached = {(e.stage, e.job_id) for e in rerun if isinstance(e, JobFinished) and e.cached}
    assert ("tokenizer_search", "search") in cached and len([c for c in cached if c[0] == "tokenizer"]) == 4
    assert len(tracker.runs("tokenizer")) == 4 and len(tracker.runs("diffusion")) == 2
    assert Store(study.root).done(after.search) is not None


def test_plan_before_and_after_the_search(tmp_path: Path) -> None:
    """Before the search ends: the search job and `confirm` x diffusion slots; after (a stored result): the
    searched tokenizers, each after the search, and diffusion runs of the best feasible ones only; changing
    `confirm` re-plans without searching again."""
    study = parse_study(search_study(tmp_path, confirm=2))
    plan = StudyPlan.from_spec(study)
    search = plan.search
    assert isinstance(search, TokenizerSearchJob) and search.spec.num_samples == 4
    assert [(s.id, s.rank) for s in plan.of(ConfirmationSlot)] == [("search-best1/SiT-T/0", 1),
                                                                    ("search-best2/SiT-T/0", 2)]
    # the estimate prices num_samples trainings of the block's first draw and `confirm` diffusion trials on it:
    # 4x and 2x a plain study of that one tokenizer
    from raysweep.engine.status import study_status
    from raysweep.estimate.gpu_hours import estimate_gpu_hours

    plain_data = search_study(tmp_path / "plain")
    plain_data["tokenizers"].pop("search")
    plain_data["tokenizers"]["kl_weight"] = study.tokenizer_trials[0].kl_weight
    estimate, plain = estimate_gpu_hours(study), estimate_gpu_hours(parse_study(plain_data))
    assert estimate["counts"]["tokenizers"] == 4 and estimate["counts"]["diffusion_trials"] == 2
    for stage, times in (("tokenizer_training", 4), ("latent_metrics", 4), ("diffusion_training", 2),
                         ("sampling", 2)):
        key = "cpu_hours" if stage == "latent_metrics" else "gpu_hours"
        assert estimate["stages"][stage][key] == pytest.approx(times * plain["stages"][stage][key]), stage
    status = study_status(study)
    assert status["diffusion_trials"] == 2 and not status["tokenizer_search"]["finished"]
    assert "tokenizer search: not finished" in study_status(study, text=True)

    scores = {0.01: (3.0, True), 0.1: (1.0, False), 1.0: (2.0, True), 3.0: (5.0, True)}
    trials = [{"trial": {**study.tokenizer_trials[0].model_dump(), "kl_weight": w, "id": f"t{w}"},
               "metrics": {SEARCH_SCORE: s}, "feasible": ok} for w, (s, ok) in scores.items()]
    Store.mark_done(Store(study.root).marker(search), {"trials": trials, "run_id": None, "errors": []})
    after = plan_study(study)
    assert [t.id for t in after.tokenizers] == ["t0.01", "t0.1", "t1.0", "t3.0"]
    assert [j.tokenizer.id for j in after.diffusion] == ["t0.01", "t1.0"]  # the 2 feasible of lowest score
    one = parse_study(search_study(tmp_path, confirm=1))
    assert StudyPlan.from_spec(one).search.key == search.key  # the same search
    assert [j.tokenizer.id for j in plan_study(one).diffusion] == ["t1.0"]
    assert study_status(one)["tokenizer_search"] == {"finished": True, "num_samples": 4, "confirm": 1,
                                                     "confirmed": ["t1.0"], "confirmation_slots": 0}


def _bad(tmp_path: Path, change: Any) -> str:
    data = search_study(tmp_path)
    change(data["tokenizers"])
    with pytest.raises(ConfigError) as err:
        parse_study(data, "study.yaml")
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize(("change", "where", "says"), [
    (lambda t: t.update(kl_weight=1e-6), "tokenizers.search", "no search domain"),
    (lambda t: t["search"].update(objective="latent/velocity/vivv"), "tokenizers.search.objective",
     "allowed: latent/smoothness/sec@0.25, latent/smoothness/sec@0.5, latent/velocity/viv, recon/psnr, recon/rfid"),
    (lambda t: t["search"].update(constraint="gen/best/gfid <= 3"), "tokenizers.search.constraint",
     "unknown metric 'gen/best/gfid'"),
    (lambda t: t["search"].update(constraint="psnr > 3"), "tokenizers.search.constraint", "<metric> >= <number>"),
    (lambda t: t["search"].update(algorithm="grid"), "tokenizers.search.algorithm", "'optuna' or 'random'"),
    (lambda t: t["search"].update(confirm=5), "tokenizers.search", "confirm (5) cannot exceed num_samples (4)"),
    (lambda t: t["search"].update(confirm=0), "tokenizers.search.confirm", "greater than or equal to 1"),
    (lambda t: t["search"].update(objectives="x"), "tokenizers.search.objectives", "allowed: algorithm, confirm"),
    (lambda t: t.update(variants=[{"regularizer": "lcr"}]), "tokenizers.variants", "remove it"),
    (lambda t: t.update(lr={"grid": [1e-4, 1e-3]}), "tokenizers.lr", "not 'grid'"),
])
def test_bad_search_block_is_one_line_naming_the_key(tmp_path: Path, change: Any, where: str, says: str) -> None:
    message = _bad(tmp_path, change)
    assert message.startswith(f"study.yaml: {where}:") and says in message, message


def test_docs_search_block_is_valid(tmp_path: Path) -> None:
    section = (Path(__file__).resolve().parents[1] / "docs" / "tokenizer-search.md").read_text()
    start = section.index("```yaml") + len("```yaml")
    block = yaml.safe_load(section[start:section.index("```\n", start)])
    study = parse_study({**search_study(tmp_path), **block}, "docs/tokenizer-search.md")
    search = StudyPlan.from_spec(study).search
    assert search is not None and search.spec.num_samples == 20 and search.spec.confirm == 2
    assert set(search.space["params"]) == {"weight", "threshold"}  # lcr's declared search_space
