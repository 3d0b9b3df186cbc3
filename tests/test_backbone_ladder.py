"""A backbone ladder (`diffusion.allocation.fidelity: {backbone: ...}`): the cheap backbone runs on every tokenizer as
diffusion jobs of its own; the target backbone runs only on the tokenizers the allocator promotes from the cheap
gFIDs and the latent features; the estimate prices exactly that; the analysis keeps the cheap runs out of the target
backbone's rows and reports the rank agreement of the two tiers. The scheduler tests run the plan's real jobs
in-process (LocalExecutor, real store markers), as tests/test_allocation_gate.py does."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_allocation_gate import _gfid_job, _truth
from test_e2e_study import micro_study

from raysweep.analysis.rank_agreement import rank_agreement
from raysweep.config import parse_study
from raysweep.config.errors import ConfigError
from raysweep.config.plan import DiffusionJob, Job, StudyPlan, TokenizerJob
from raysweep.engine.events import JobEvent, JobStarted
from raysweep.engine.executors import LocalExecutor, Task
from raysweep.engine.scheduler import Scheduler
from raysweep.engine.status import study_status
from raysweep.engine.store import Store
from raysweep.estimate.gpu_hours import job_hours
from raysweep.estimate.simulation import simulated_task
from raysweep.search.allocation import load_state
from raysweep.search.report import ladder_section
from raysweep.stages.allocation_gate import CHEAP_GFID, NO_CHEAP_GFID, NOT_CHOSEN, ProxyGate
from raysweep.tracking import Tracker
from raysweep.tracking.table import study_table

N = 8
CHEAP = "LightningDiT-T"  # the micro study's target is SiT-T, the smallest SiT: the cheap tier is another family
LADDER = {"mode": "proxy", "budget": {"trials": 3}, "calibration": {"count": 2}, "acquisition": {"draws": 100},
          "stop": {"never": True}, "fidelity": {"backbone": CHEAP}}


def _data(root: Path, fidelity: dict | None = None, tokenizers: int = N) -> dict:
    data = micro_study(root)
    data["tokenizers"]["variants"] = [{"regularizer": "baseline", "kl_weight": 10.0 ** -i, "id": f"t{i}"}
                                      for i in range(tokenizers)]
    data["diffusion"]["allocation"] = {**LADDER, "fidelity": fidelity or LADDER["fidelity"]}
    return data


def _cheap_truth(tokenizer_id: str) -> float:
    """The cheap backbone's gFID: higher than the target's, ranking the tokenizers almost as it does."""
    return 2.0 * _truth(tokenizer_id) + 5.0 + 0.1 * int(tokenizer_id[1:])


def _features(jobs: list[TokenizerJob]) -> pd.DataFrame:
    """Latent features that tell the tokenizers apart in nothing: only the cheap tier can rank them."""
    return pd.DataFrame([{"tokenizer_id": j.id, "latent/x": 1.0, "recon/psnr": 20.0} for j in jobs])


def _scheduler(study, interrupt: list[int] | None = None, no_cheap_gfid: str = ""
               ) -> tuple[Scheduler, ProxyGate, list[JobEvent]]:
    plan, store = StudyPlan.from_spec(study), Store(study.root)
    jobs, events = plan.by_ref(), []

    def task(job: Job) -> Task:
        if isinstance(job, DiffusionJob):
            cheap = job.backbone == CHEAP
            value = float("nan") if cheap and job.tokenizer.id == no_cheap_gfid else (
                _cheap_truth if cheap else _truth)(job.tokenizer.id)
            return Task(job.ref, "task", _gfid_job, (str(store.marker(job)), value,
                                                     interrupt if interrupt is not None else [], job.record()))
        if job.stage == "analysis":
            return Task(job.ref, "driver", lambda: None)
        return simulated_task(job, store, jobs, 0.0, {"CPU": 1}, tune=False)

    spec = study.allocation
    assert spec is not None
    gate = ProxyGate(spec, plan, store, _features, seed=study.seed)
    return Scheduler(plan, store, LocalExecutor({"CPU": 2}), task, events.append, gate=gate), gate, events


@pytest.mark.parametrize(("fidelity", "key", "says"), [
    ({"backbone": "SiT-Q"}, "diffusion.allocation.fidelity.backbone", "unknown backbone 'SiT-Q'; allowed: "),
    ({"backbone": "SiT-T"}, "diffusion.allocation.fidelity.backbone", "is a target backbone of the study"),
    ({"backbone": CHEAP, "patch_size": 3}, "diffusion.allocation.fidelity.patch_size",
     "does not divide the 8x8 latent grid"),
])
def test_a_bad_cheap_tier_is_one_line_naming_file_key_and_allowed_values(tmp_path: Path, fidelity: dict, key: str,
                                                                        says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_study(_data(tmp_path, fidelity), source="study.yaml")
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"study.yaml: {key}: ") and says in line and "allowed: " in line
    if fidelity["backbone"] == "SiT-T":  # the allowed ones are the other backbones
        assert "SiT-S" in line and "SiT-T," not in line


def test_the_cheap_tier_takes_the_blocks_own_fields_and_asha_keys_stay_asha(tmp_path: Path) -> None:
    study = parse_study(_data(tmp_path, {"backbone": CHEAP, "batch_size": 16}))
    cheap = study.ladder_trial
    assert cheap is not None and cheap.backbone == CHEAP
    assert cheap.steps == 30 and cheap.batch_size == 16  # the block's steps; the ladder's own batch size
    assert study.allocation is not None and study.allocation.fidelity is None  # no ASHA key: no ASHA tiers
    both = parse_study(_data(tmp_path, {"backbone": CHEAP, "grace_fraction": 0.5})).allocation
    assert both is not None and both.fidelity is not None and both.fidelity.grace_fraction == 0.5
    assert both.ladder == {"backbone": CHEAP}


def test_the_plan_has_a_cheap_run_per_tokenizer_that_the_target_runs_wait_for(tmp_path: Path) -> None:
    data = _data(tmp_path, tokenizers=3)
    laddered = StudyPlan.from_spec(parse_study(data))
    del data["diffusion"]["allocation"]
    plain = StudyPlan.from_spec(parse_study(data))
    cheap = [j for j in laddered.diffusion if j.backbone == CHEAP]
    target = [j for j in laddered.diffusion if j.backbone != CHEAP]
    assert [j.id for j in cheap] == [f"t{i}/{CHEAP}/0" for i in range(3)]
    # the target runs are today's jobs, under today's keys; the cheap runs have keys of their own
    assert [(j.id, j.key, j.evaluation_key) for j in target] == [(j.id, j.key, j.evaluation_key)
                                                                 for j in plain.diffusion]
    assert not {j.key for j in cheap} & {j.key for j in target} and len({j.key for j in cheap}) == 3
    for run in target:
        assert (run.stage, f"{run.tokenizer.id}/{CHEAP}/0") in run.deps
    assert all(not any(d[0] == "diffusion" for d in j.deps) for j in cheap)
    assert len(laddered) == len(plain) + 3 * 2  # a cheap run and its diffusion-metric job per tokenizer


def test_the_target_runs_only_on_tokenizers_promoted_from_the_cheap_tier(tmp_path: Path) -> None:
    study = parse_study(_data(tmp_path / "s"))
    scheduler, gate, events = _scheduler(study)
    result = scheduler.run()
    assert not result.failed
    state = load_state(Store(study.root).allocation_state)
    assert state is not None and state.done == "budget" and len(state.measured) == 3
    promoted = state.measured_ids()
    started = [e.job_id for e in events if isinstance(e, JobStarted) and e.stage == "diffusion"]
    assert sorted(j for j in started if CHEAP in j) == [f"t{i}/{CHEAP}/0" for i in range(N)]  # every tokenizer
    assert {j.split("/")[0] for j in started if CHEAP not in j} == promoted
    last_cheap = max(i for i, j in enumerate(started) if CHEAP in j)
    assert all(CHEAP in j for j in started[:last_cheap + 1])  # no target run before every cheap gFID is in
    # the latent features are flat, so the cheap gFID decides: calibration measures its two lowest (t3 25.3, t2
    # 27.2; not its range), then the lowest cheap gFID not yet measured (t4: 27.4 against t1's 33.1) is promoted
    assert state.batches == (("t3", "t2"), ("t4",)) and dict(state.measured) == {t: _truth(t) for t in promoted}
    allocator = gate.build(gate.finished_tokenizers())
    assert allocator.features.shape == (N, 3)
    np.testing.assert_allclose(allocator.features[:, -1], [_cheap_truth(t) for t in allocator.ids])
    assert {r for r, why in result.skipped.items() if why == NOT_CHOSEN} == {
        ("diffusion", f"t{i}/SiT-T/0") for i in range(N) if f"t{i}" not in promoted}
    assert CHEAP_GFID == "ladder/cheap_gfid" and ("analysis", "analysis") in result.finished
    status = study_status(study)["allocation"]  # the cheap runs of unpromoted tokenizers ran: not "not chosen"
    assert status["diffusion_skipped"] == N - 3


def test_a_cheap_run_without_a_gfid_leaves_its_tokenizer_out_of_the_allocation(tmp_path: Path) -> None:
    study = parse_study(_data(tmp_path))
    scheduler, gate, _ = _scheduler(study, no_cheap_gfid="t3")
    result = scheduler.run()
    state = load_state(Store(study.root).allocation_state)
    assert not result.failed and state is not None and "t3" not in state.chosen_ids()
    assert gate.allocator is not None and "t3" not in gate.allocator.ids and len(gate.allocator.ids) == N - 1
    assert result.skipped[("diffusion", "t3/SiT-T/0")] == NO_CHEAP_GFID


def test_with_asha_keys_too_the_cheap_runs_run_alone_ungated(tmp_path: Path) -> None:
    study = parse_study(_data(tmp_path, {"backbone": CHEAP, "reduction_factor": 2}))
    spec = study.allocation
    assert spec is not None and spec.fidelity is not None and spec.fidelity.reduction_factor == 2
    plan = StudyPlan.from_spec(study)
    gate = ProxyGate(spec, plan, Store(study.root), _features)
    cheap = [j for j in plan.diffusion if j.backbone == CHEAP]
    assert len(cheap) == N and not any(gate.gates(j) for j in cheap) and all(gate.cohort(j) == [] for j in cheap)
    assert all(gate.gates(j) for j in plan.diffusion if j.backbone != CHEAP)


def test_a_restarted_driver_recomputes_the_same_promotions(tmp_path: Path) -> None:
    whole = parse_study(_data(tmp_path / "whole"))
    _scheduler(whole)[0].run()
    reference = load_state(Store(whole.root).allocation_state)

    study = parse_study(_data(tmp_path / "resumed"))
    with pytest.raises(KeyboardInterrupt):
        _scheduler(study, interrupt=[N + 1])[0].run()  # killed after every cheap run and one target run
    mid = load_state(Store(study.root).allocation_state)
    assert mid is not None and mid.done is None and mid.pending
    scheduler, _, events = _scheduler(study)
    result = scheduler.run()
    assert not result.failed and load_state(Store(study.root).allocation_state) == reference
    rerun = [e.job_id for e in events if isinstance(e, JobStarted) and e.stage == "diffusion"]
    assert rerun and not any(CHEAP in j for j in rerun) and len(rerun) == 3 - 1  # cached: cheap runs, one target


def test_the_estimate_prices_cheap_runs_on_all_and_target_runs_on_the_promoted(tmp_path: Path) -> None:
    from raysweep.estimate.gpu_hours import estimate_gpu_hours
    from raysweep.search.estimate import proxy_estimate

    study = parse_study(_data(tmp_path))
    plan = StudyPlan.from_spec(study)
    hours = job_hours(study, plan)
    cheap = [hours[j.ref] for j in plan.diffusion if j.backbone == CHEAP]
    target = [hours[j.ref] for j in plan.diffusion if j.backbone != CHEAP]
    assert len(cheap) == len(target) == N and len(set(np.round(target, 12))) == 1  # one target run per tokenizer
    estimate = estimate_gpu_hours(study, plan)
    out = proxy_estimate(estimate, study.allocation)
    brute, proxy = out["brute_force"], out["proxy"]
    # by hand: brute force = target runs on all N; the ladder = N cheap runs + 3 target runs (budget.trials: 3)
    assert brute["diffusion_trials"] == N and brute["diffusion_gpu_hours"] == pytest.approx(sum(target))
    assert proxy["diffusion_trials"] == N + 3
    assert proxy["diffusion_gpu_hours"] == pytest.approx(sum(cheap) + 3 * target[0])
    assert proxy["ladder"] == pytest.approx({"backbone": CHEAP, "cheap_trials": N, "cheap_gpu_hours": sum(cheap),
                                             "promoted_tokenizers": 3, "target_trials": 3,
                                             "target_gpu_hours": 3 * target[0]})
    other = estimate["gpu_hours"] - sum(cheap) - sum(target)
    assert brute["gpu_hours"] == pytest.approx(other + sum(target))
    assert proxy["gpu_hours"] == pytest.approx(other + sum(cheap) + 3 * target[0])


def test_plan_json_prices_the_ladder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import yaml

    from raysweep.cli import main

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_data(tmp_path / "root", tokenizers=3)))
    assert main(["plan", "--json", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)["proxy_estimate"]
    assert out["proxy"]["ladder"]["cheap_trials"] == 3 and out["proxy"]["ladder"]["target_trials"] == 3
    assert out["brute_force"]["diffusion_trials"] == 3  # a budget of 3 trials on 3 tokenizers: all promoted


def test_rank_agreement_of_the_tiers_by_hand() -> None:
    cheap = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "only_cheap": 0.5}
    target = {"a": 10.0, "b": 30.0, "c": 20.0, "d": 40.0}
    a = rank_agreement(cheap, target, top_k=2)
    # ranks over a..d: cheap 1 2 3 4, target 1 3 2 4; sum d^2 = 2: 1 - 6 * 2 / (4 * 15) = 0.8
    assert a.n == 4 and a.spearman == pytest.approx(0.8) and a.spearman == pytest.approx(
        stats.spearmanr([1, 2, 3, 4], [1, 3, 2, 4])[0])
    assert a.top_k == 2 and a.top_k_overlap == 0.5  # {a, b} vs {a, c}
    row = ladder_section(cheap, target, CHEAP, ["SiT-B"], top_k=2).frame.iloc[0]
    assert (row["tokenizers_cheap"], row["tokenizers_target"], row["tokenizers_with_both"]) == (5, 4, 4)
    assert row["spearman"] == pytest.approx(0.8) and row["top_k_overlap"] == 0.5


def test_the_analysis_table_keeps_cheap_runs_out_of_the_target_rows(tmp_path: Path) -> None:
    """A promoted tokenizer keeps its target rows only; one with its cheap run only is a NO_DIFFUSION row (as a
    tokenizer whose diffusion runs were not chosen), so no cheap gFID is pooled into the correlations."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    study = tracker.open_run("t", "study", "s")
    for tid, backbones in (("a", (CHEAP, "SiT-T")), ("b", (CHEAP,))):
        tok = tracker.open_run(tid, "tokenizer", f"key-{tid}", parent_id=study, tags={"tokenizer_id": tid})
        tracker.log_metrics(tok, {"recon/psnr": 20.0})
        tracker.finish(tok)
        for backbone in backbones:
            run = tracker.open_run(f"{tid}/{backbone}/0", "diffusion", f"d-{tid}-{backbone}", parent_id=tok,
                                   tags={"tokenizer_id": tid, "backbone": backbone, "seed": 0})
            tracker.log_metrics(run, {"gen/cfg1/gfid": 7.0 if backbone == CHEAP else 5.0, "gen/best/gfid": 5.0})
            tracker.finish(run)
    assert set(study_table(tracker)["backbone"].dropna()) == {CHEAP, "SiT-T"}
    table = study_table(tracker, (CHEAP,)).set_index("tokenizer_id")
    assert table.loc["a", "backbone"] == "SiT-T" and table.loc["a", "gen/gfid"] == 5.0
    assert table.loc["b", "status"] == "NO_DIFFUSION" and table.loc["b", "recon/psnr"] == 20.0
    assert len(table) == 2


@pytest.mark.e2e
def test_a_ladder_study_killed_mid_allocation_resumes_with_the_same_promotions(tmp_path: Path) -> None:
    """`raysweep run` (a real local Ray, MLflow, Parquet) of a three-tokenizer ladder, SIGKILLed with its Ray once
    the allocation has started, then run again: every tokenizer has one cheap run, the target backbone ran on the
    promoted ones only, no MLflow run is duplicated, the saved batches before the kill lead the final ones, and the
    report has the ladder section."""
    import time

    import mlflow
    import yaml
    from study_process import kill_run, start_run, tracked_runs

    from raysweep.config import load_study
    from raysweep.tracking import STAGE_TAG

    data = {
        "name": "ladder",
        "dataset": {"name": "shapes", "image_size": 16, "num_classes": 4, "train_size": 96, "val_size": 32},
        "reference": {"train_steps": 20, "batch_size": 32},
        "tokenizers": {"architecture": "conv-tiny", "latent": "f2d4", "steps": 20, "batch_size": 16,
                       "variants": [{"regularizer": "baseline", "kl_weight": w, "id": f"t{i}"}
                                    for i, w in enumerate((1e-6, 1e-3, 1.0))]},
        "diffusion": {"backbone": "SiT-T", "steps": 20, "batch_size": 32, "seeds": [0],
                      "allocation": {**LADDER, "budget": {"trials": 2}}},
        "evaluation": {"sampling_steps": 2, "cfg_scales": [1.0], "num_samples": 16, "trajectory_samples": 4},
        "metrics": {"names": ["viv"], "actors": 1, "batch_size": 32},
        "ray": {"num_cpus": 2},
        "storage": {"root": str(tmp_path / "store"), "checkpoint_every": 5},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    study = load_study(path)
    state_file = Store(study.root).allocation_state
    proc = start_run(path)
    deadline = time.monotonic() + 600
    while not state_file.is_file() and proc.poll() is None:
        assert time.monotonic() < deadline, "the allocation did not start in 600 s"
        time.sleep(0.2)
    if proc.poll() is None:
        kill_run(proc)
    before = load_state(state_file)
    assert before is not None
    assert start_run(path).wait(timeout=900) == 0
    after = load_state(state_file)
    assert after is not None and after.done == "budget" and len(after.measured) == 2
    assert after.batches[:len(before.batches)] == before.batches  # the promotions made before the kill stand
    runs, keys = tracked_runs(path)
    assert len(keys) == len(set(keys))  # nothing ran twice into MLflow
    diffusion = sorted(r.data.tags["tokenizer_id"] + "/" + r.data.tags["backbone"] for r in runs
                       if r.data.tags[STAGE_TAG] == "diffusion")
    assert diffusion == sorted([f"t{i}/{CHEAP}" for i in range(3)] + [f"{t}/SiT-T" for t in after.measured_ids()])
    study_run = next(r for r in runs if r.data.tags[STAGE_TAG] == "study" and r.info.status == "FINISHED")
    out = Path(mlflow.artifacts.download_artifacts(run_id=study_run.info.run_id, artifact_path="analysis",
                                                   tracking_uri=study.tracking_uri, dst_path=str(tmp_path / "a")))
    assert f"Backbone ladder: {CHEAP} vs SiT-T" in (out / "report.md").read_text()
    table = pd.read_csv(out / "table.csv")
    assert CHEAP not in set(table["backbone"].dropna())
