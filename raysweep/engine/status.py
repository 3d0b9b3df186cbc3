"""`raysweep status`: which planned jobs are finished in the store, without starting Ray.

Only the jobs the study file plans now are counted: results on disk that an edited study no longer plans (another
seed, a removed tokenizer) are ignored, except as the `stale` result of a planned job of the same id whose recorded
inputs differ (the fields that changed are named). Results reused by `raysweep migrate` list the inputs assumed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from raysweep.config.plan import (
    ConfirmationSlot,
    DiffusionMetricJob,
    Job,
    LatentMetricJob,
    MetricJob,
    ModelMetricJob,
    StudyPlan,
)
from raysweep.config.spec import StudySpec
from raysweep.engine.continuation import continuation_interval, continued_steps
from raysweep.engine.images import dataset_key
from raysweep.engine.migrate import ASSUMED, legacy_results
from raysweep.engine.store import RESULT_FILE, Store
from raysweep.engine.study_plan import plan_study


def job_done(store: Store, job: Job) -> bool:
    """Whether `job`'s done-marker exists in the store (the analysis job is never cached)."""
    return store.done(job) is not None


def _latest_by_id(directory: Path) -> dict[str, dict[str, Any]]:
    """Result id -> the most recent result recorded under `directory` (tokenizers/, diffusion/) with its inputs."""
    found: dict[str, tuple[float, dict[str, Any]]] = {}
    for path in directory.glob(f"*/{RESULT_FILE}"):
        result = json.loads(path.read_text())
        when = path.stat().st_mtime
        if "id" in result and "inputs" in result and when >= found.get(result["id"], (-1.0, {}))[0]:
            found[result["id"]] = (when, result)
    return {job_id: result for job_id, (_, result) in found.items()}


def stale_results(plan: StudyPlan, store: Store, every: int | None) -> list[dict[str, Any]]:
    """Planned jobs whose stored result was made from other inputs, with the dotted fields that differ: a result
    at the job's marker that is not current (a metric's parameters or version, the evaluation), else the latest
    result of the same id under another key (a tokenizer or diffusion run whose key changed). A diffusion run the
    next run continues from a shorter one (`engine/continuation.py`; `every`: the checkpoint interval, None where
    runs are never continued: data-parallel trials) says from which step (`continues`)."""
    others = {stage: _latest_by_id(store.root / folder) for stage, folder in (("tokenizer", "tokenizers"),
                                                                              ("diffusion", "diffusion"))}
    out: list[dict[str, Any]] = []
    results = list(store.diffusion_results())  # read once: each stale diffusion job looks for a run to continue
    for job in plan:
        found = store.found(job)
        if found is not None and job.current(found):
            continue
        if found is None and job.stage in others:
            found = others[job.stage].get(job.id)
        fields = [] if found is None else job.stale_inputs(found)
        if fields:
            continues = continued_steps(job, store, every, results)
            out.append({"stage": job.stage, "id": job.id, "fields": fields,
                        **({"continues": continues} if continues else {})})
    return out


def assumed_inputs(plan: StudyPlan, store: Store) -> list[dict[str, Any]]:
    """Finished jobs reused by `raysweep migrate`, with the inputs their old key did not cover."""
    out = []
    for job in plan:
        done = store.done(job)
        if done is None:
            continue
        if isinstance(job, MetricJob):
            fields = [f"{name}.{f}" for name, entry in done["metrics"].items() if name in job.names
                      for f in entry.get(ASSUMED, [])]
        else:
            fields = list(done.get(ASSUMED, []))
        if fields:
            out.append({"stage": job.stage, "id": job.id, "fields": fields})
    return out


def study_status(study: StudySpec, text: bool = False, plan: StudyPlan | None = None) -> Any:
    store = Store(study.root, study.latent_storage)
    plan = plan or plan_study(study, store)
    by_tokenizer: dict[str, dict[str, Any]] = {}
    for job in plan.tokenizers:
        row = {"id": job.id, "key": job.key, "trained": job_done(store, job)}
        for kind, name in ((LatentMetricJob, "metrics"), (ModelMetricJob, "model_metrics")):
            row[name] = all(job_done(store, j) for j in plan.of(kind) if j.id == job.id)
        by_tokenizer[job.id] = row
    runs = plan.diffusion
    finished = [j for j in runs if job_done(store, j)]
    slots = plan.of(ConfirmationSlot)  # diffusion trials of tokenizers a search has not found yet
    status: dict[str, Any] = {"study": study.name, "root": str(study.root),
              "data_ready": store.data(dataset_key(study.dataset)).is_dir(), "tokenizers": list(by_tokenizer.values()),
              "diffusion_trials": len(runs) + len(slots), "diffusion_finished": len(finished),
              "diffusion_metrics_finished": sum(job_done(store, j) for j in plan.of(DiffusionMetricJob)),
              "jobs": len(plan), "jobs_finished": sum(job_done(store, j) for j in plan),
              "stale": stale_results(plan, store, continuation_interval(study)),
              "assumed_at_migration": assumed_inputs(plan, store),
              "to_migrate": len(legacy_results(study, plan, store))}
    if plan.search is not None:  # tokenizers.search
        search = plan.search
        status["tokenizer_search"] = {"finished": job_done(store, search), "num_samples": search.spec.num_samples,
                                      "confirm": search.spec.confirm,
                                      "confirmed": sorted({j.tokenizer.id for j in runs}),
                                      "confirmation_slots": len(slots)}
    if store.allocation_state.is_file():  # diffusion.allocation: proxy
        from raysweep.search.allocation import AllocationState

        state = AllocationState.from_json(store.allocation_state.read_text())
        chosen, cheap = state.chosen_ids(), study.ladder_backbones  # a ladder's cheap runs are never skipped
        skipped = [j for j in runs if state.done and not state.pending and j.tokenizer.id not in chosen
                   and j.backbone not in cheap]
        status["allocation"] = {"done": state.done, "measured": sorted(state.measured_ids()),
                                "pending": list(state.pending), "failed": list(state.failed),
                                "stopped": list(state.stopped),
                                "trials_spent": state.trials_spent, "diffusion_skipped": len(skipped)}
    if not text:
        return status
    lines = [f"study {study.name} ({study.root})"]
    lines += [f"  {t['id']:<28} trained={'yes' if t['trained'] else 'no ':<3} metrics={'yes' if t['metrics'] else 'no'}"
              for t in status["tokenizers"]]
    if "tokenizer_search" in status:
        s = status["tokenizer_search"]
        confirmed = ", ".join(s["confirmed"]) or "none (no feasible tokenizer)"
        lines.append(f"  tokenizer search: finished; confirmed {confirmed}" if s["finished"] else
                     f"  tokenizer search: not finished ({s['num_samples']} tokenizers; the best {s['confirm']} "
                     "feasible get the diffusion trials)")
    lines.append(f"  diffusion: {len(finished)}/{status['diffusion_trials']} finished")
    lines += status_lines(status)
    if "allocation" in status:
        a = status["allocation"]
        lines.append(f"  proxy allocation: {a['done'] or 'in progress'}; {len(a['measured'])} tokenizers measured, "
                     f"{len(a['pending'])} pending, {len(a['stopped'])} stopped by ASHA; "
                     f"{a['diffusion_skipped']} diffusion trials not chosen")
    return "\n".join(lines)



def status_lines(status: dict[str, Any]) -> list[str]:
    """The text of a status's stale, migrated and to-migrate results."""
    lines = [f"  stale  {s['stage']} '{s['id']}': {', '.join(s['fields'])} changed ("
             + (f"continued from its step-{s['continues']:,} state" if "continues" in s else "recomputed")
             + " by the next run)" for s in status["stale"]]
    lines += [f"  {a['stage']} '{a['id']}': assumed at migration: {', '.join(a['fields'])}"
              for a in status["assumed_at_migration"]]
    if status["to_migrate"]:
        lines.append(f"  {status['to_migrate']} result(s) under an older release's keys: run `raysweep migrate` first")
    return lines
