"""`raysweep status`: which planned jobs are finished in the store, without starting Ray.

Only the jobs the study file plans now are counted: results on disk that an edited study no longer plans (another
seed, a removed tokenizer) are ignored.
"""
from __future__ import annotations

from typing import Any

from raysweep.config.plan import (
    ConfirmationSlot,
    DiffusionMetricJob,
    Job,
    LatentMetricJob,
    ModelMetricJob,
    StudyPlan,
)
from raysweep.config.spec import StudySpec
from raysweep.pipeline.images import dataset_key
from raysweep.pipeline.store import Store


def job_done(store: Store, job: Job) -> bool:
    """Whether `job`'s done-marker exists in the store (the analysis job is never cached)."""
    return store.done(job) is not None


def study_status(study: StudySpec, text: bool = False) -> Any:
    store = Store(study.root, study.latent_storage)
    plan = StudyPlan.from_spec(study)
    by_tokenizer: dict[str, dict[str, Any]] = {}
    for job in plan.tokenizers:
        row = {"id": job.id, "key": job.key, "trained": job_done(store, job)}
        for kind, name in ((LatentMetricJob, "metrics"), (ModelMetricJob, "model_metrics")):
            row[name] = all(job_done(store, j) for j in plan.of(kind) if j.id == job.id)
        by_tokenizer[job.id] = row
    runs = plan.diffusion
    finished = [j for j in runs if job_done(store, j)]
    slots = plan.of(ConfirmationSlot)  # diffusion trials of tokenizers a search has not found yet
    status = {"study": study.name, "root": str(study.root),
              "data_ready": store.data(dataset_key(study.dataset)).is_dir(), "tokenizers": list(by_tokenizer.values()),
              "diffusion_trials": len(runs) + len(slots), "diffusion_finished": len(finished),
              "diffusion_metrics_finished": sum(job_done(store, j) for j in plan.of(DiffusionMetricJob)),
              "jobs": len(plan), "jobs_finished": sum(job_done(store, j) for j in plan)}
    if plan.search is not None:  # tokenizers.search
        search = plan.search
        status["tokenizer_search"] = {"finished": job_done(store, search), "num_samples": search.spec.num_samples,
                                      "confirm": search.spec.confirm,
                                      "confirmed": sorted({j.tokenizer.id for j in runs}),
                                      "confirmation_slots": len(slots)}
    if store.allocation_state.is_file():  # diffusion.allocation: proxy
        from raysweep.search.allocation import AllocationState

        state = AllocationState.from_json(store.allocation_state.read_text())
        chosen = state.chosen_ids()
        skipped = [j for j in runs if state.done and not state.pending and j.tokenizer.id not in chosen]
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
    if "allocation" in status:
        a = status["allocation"]
        lines.append(f"  proxy allocation: {a['done'] or 'in progress'}; {len(a['measured'])} tokenizers measured, "
                     f"{len(a['pending'])} pending, {len(a['stopped'])} stopped by ASHA; "
                     f"{a['diffusion_skipped']} diffusion trials not chosen")
    return "\n".join(lines)

