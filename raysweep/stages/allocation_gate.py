"""`diffusion.allocation: proxy` in the study engine: a scheduler `Gate` that releases only the diffusion runs of the
tokenizers the allocator (`raysweep.search.allocation`) chooses.

The gate holds every `DiffusionJob` (their `DiffusionMetricJob`s wait on them anyway). Once every tokenizer's
prerequisites (the tokenizer and its metric jobs: a diffusion job's deps) have finished or failed, it builds the
`Allocator` from the finished tokenizers' latent and reconstruction metrics (`features`), restores the saved state
(`Store.allocation_state`) or starts one, and proposes batches. The diffusion jobs of proposed tokenizers are
released; when all of one tokenizer's diffusion jobs are over, its gFID (mean best-CFG `gen/best/gfid` of the runs
that finished; None if none did) is recorded and the allocator proposes again. The state is saved after every
transition, so a restarted driver continues the same allocation. When the allocator is done and nothing is pending,
the unchosen tokenizers' diffusion jobs are skipped ("not chosen by the proxy allocation") and `on_done` runs once
(the runner logs `pred/*` values there).

Under multi-fidelity gFID (`fidelity`) the diffusion jobs of one proposed batch with the same diffusion trial run
as one cohort (`cohort`: one Tune experiment under ASHA). One per diffusion trial, not per batch: ASHA ranks the
cohort's trials against each other, which compares tokenizers only when backbone and steps are the same (and
ASHA's rungs need one checkpoint count). A run ASHA stopped is finished but not measured: its tokenizer's gFID is
the mean over its full-tier runs, and a tokenizer whose runs were all stopped is recorded as stopped; the metric
jobs of a stopped run (the velocity Fisher of a half-trained model) are skipped.

Under a backbone ladder (`fidelity.backbone`) every tokenizer's cheap-backbone run is an ordinary diffusion job the
gate does not hold; the target runs depend on it (a plan dependency), so the allocator starts once every cheap run is
over, with each tokenizer's cheap gFID (its run's `gen/best/gfid`, from the store: the same on a resumed driver) as
one more proxy feature (`CHEAP_GFID`). A tokenizer whose cheap run failed loses its target runs with it; one whose
cheap run gave no finite gFID is left out of the allocation and its target runs are skipped. The cheap runs never
join an ASHA cohort nor the allocator's measured gFIDs.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from raysweep.config.allocation import ProxyAllocation
from raysweep.config.plan import DiffusionJob, DiffusionMetricJob, Job, JobRef, StudyPlan, TokenizerJob
from raysweep.config.spec import StudySpec
from raysweep.engine.store import STOPPED_RESULT, Store
from raysweep.search.allocation import AllocationState, Allocator, load_state, save_state
from raysweep.tracking import Tracker
from raysweep.tracking.keys import BEST_GFID, FULL_TIER, TIER_TAG, tier_gfid_key

NOT_CHOSEN = "not chosen by the proxy allocation"
NO_CHEAP_GFID = "not run: its cheap-tier run gave no gFID"
GFID = BEST_GFID
CHEAP_GFID = "ladder/cheap_gfid"  # the allocator's feature column of a backbone ladder's cheap-tier gFID
Features = Callable[[list[TokenizerJob]], pd.DataFrame]  # finished tokenizers -> one row each: tokenizer_id, metrics


class ProxyGate:
    """The scheduler gate of a proxy-guided study (see the module docstring). `gpu_hours` is the estimated diffusion
    GPU-hours of one tokenizer (all its trials), needed only for a GPU-hour budget."""

    def __init__(self, spec: ProxyAllocation, plan: StudyPlan, store: Store, features: Features, seed: int = 0,
                 gpu_hours: float | None = None,
                 on_done: Callable[[Allocator, AllocationState], None] | None = None) -> None:
        self.spec, self.store, self.features, self.seed = spec, store, features, seed
        self.gpu_hours, self.on_done = gpu_hours, on_done
        self.tokenizers = {t.id: t for t in plan.tokenizers}
        self.cheap_backbone: str | None = (spec.ladder or {}).get("backbone")
        self.cheap: dict[str, DiffusionJob] = {}  # tokenizer -> its cheap-tier run (a backbone ladder)
        self.runs: dict[str, list[DiffusionJob]] = {t: [] for t in self.tokenizers}  # the target runs
        for run in plan.diffusion:
            if run.backbone == self.cheap_backbone:
                self.cheap[run.tokenizer.id] = run
            else:
                self.runs[run.tokenizer.id].append(run)
        self.prereqs = {t: set(runs[0].deps) if runs else set() for t, runs in self.runs.items()}
        self.metric_jobs: list[DiffusionMetricJob] = plan.of(DiffusionMetricJob) if spec.fidelity else []
        self.outcome: dict[JobRef, str | None] = {}  # observed jobs -> error (None: finished)
        self.allocator: Allocator | None = None
        self.state: AllocationState | None = None
        self._skipped: set[JobRef] = set()
        self._finalised = False

    # --- the Gate interface -------------------------------------------------------------------------------------
    def gates(self, job: Job) -> bool:
        if isinstance(job, DiffusionJob):
            return job.backbone != self.cheap_backbone
        return self.spec.fidelity is not None and isinstance(job, DiffusionMetricJob)

    def observe(self, job: Job, error: str | None) -> None:
        self.outcome[job.ref] = error
        if self.allocator is None:
            if all(r in self.outcome for refs in self.prereqs.values() for r in refs):
                self._start()
        elif isinstance(job, DiffusionJob):
            self._advance()

    def release(self, job: Job) -> bool:
        if isinstance(job, DiffusionMetricJob):  # its run finished (its dep); a stopped one's are skipped
            return self.stopped(job.diffusion) is None
        return self.state is not None and isinstance(job, DiffusionJob) and job.tokenizer.id in self.chosen()

    def skip(self) -> dict[JobRef, str]:
        out = {job.ref: f"not run: diffusion '{job.diffusion.id}' {reason}" for job in self.metric_jobs
               if job.ref not in self._skipped and (reason := self.stopped(job.diffusion)) is not None}
        self._skipped |= set(out)
        if self.state is None or not self.state.done or self.state.pending or self.allocator is None:
            return out
        chosen, ids = self.chosen(), set(self.allocator.ids)
        out.update({r.ref: NOT_CHOSEN if t in ids else NO_CHEAP_GFID for t in self.tokenizers if t not in chosen
                    for r in self.runs[t] if r.ref not in self._skipped})
        self._skipped |= set(out)
        if not self._finalised:
            self._finalised = True
            if self.on_done is not None:
                self.on_done(self.allocator, self.state)
        return out

    # --- the allocation -----------------------------------------------------------------------------------------
    def chosen(self) -> set[str]:
        """Tokenizers ever proposed (pending, measured, failed or stopped)."""
        return set() if self.state is None else self.state.chosen_ids()

    def cohort(self, job: DiffusionJob) -> list[DiffusionJob]:
        """The diffusion jobs that run with `job` as one ASHA cohort: those of its batch's tokenizers with its
        diffusion trial (see the module docstring), in plan order; [] for a cheap-tier run (it runs alone)."""
        if job.backbone == self.cheap_backbone:
            return []
        assert self.state is not None  # a state saved before batches were recorded: the tokenizer alone
        batch = next((b for b in self.state.batches if job.tokenizer.id in b), (job.tokenizer.id,))
        return [r for t in self.tokenizers if t in batch for r in self.runs[t] if r.trial == job.trial]

    def stopped(self, run: DiffusionJob) -> str | None:
        """Why a finished diffusion run has no full-tier result (ASHA stopped it), or None."""
        return ((self.store.done(run) or {}).get(STOPPED_RESULT) or {}).get("reason")

    def finished_tokenizers(self) -> list[str]:
        """Tokenizers (plan order) whose prerequisites all finished (under a ladder, with a finite cheap gFID):
        those the allocator chooses among."""
        return [t for t, refs in self.prereqs.items() if refs and all(self.outcome.get(r, "") is None for r in refs)
                and (self.cheap_backbone is None or self.cheap_gfid(t) is not None)]

    def cheap_gfid(self, tokenizer_id: str) -> float | None:
        """The best-CFG gFID of the tokenizer's cheap-tier run (a backbone ladder); None unless it finished with
        a finite one."""
        run = self.cheap.get(tokenizer_id)
        return None if run is None else self._gfid_of(run)

    def build(self, ok: list[str]) -> Allocator:
        """The allocator over the tokenizers `ok`, fitted on their tracked metrics (and cheap-tier gFIDs)."""
        table = self.features([self.tokenizers[t] for t in ok])
        cheap = None
        if self.cheap_backbone is not None:
            table = table.assign(**{CHEAP_GFID: [self.cheap_gfid(t) for t in table["tokenizer_id"]]})
            cheap = CHEAP_GFID
        per_tokenizer = len(next(iter(self.runs.values()), []))
        hours = None if self.gpu_hours is None else np.full(len(table), self.gpu_hours)
        return Allocator.from_table(self.spec, table, trials_per_tokenizer=per_tokenizer, gpu_hours=hours,
                                    seed=self.seed, cheap_gfid=cheap)

    def _start(self) -> None:
        ok = self.finished_tokenizers()
        if not ok:  # every tokenizer failed: their diffusion jobs fail with them, there is nothing to allocate
            return
        self.allocator = self.build(ok)
        self.state = load_state(self.store.allocation_state) or self.allocator.start()
        unknown = self.state.chosen_ids() - set(ok)
        if unknown:
            raise ValueError(f"{self.store.allocation_state} allocates tokenizers this study no longer has finished: "
                             f"{sorted(unknown)}; remove the file to start the allocation again")
        self._advance()

    def _over(self, tokenizer_id: str) -> bool:
        return all(r.ref in self.outcome for r in self.runs[tokenizer_id])

    def gfid(self, tokenizer_id: str) -> float | None:
        """Mean best-CFG gFID of the tokenizer's finished (target) diffusion runs; None when none finished."""
        values = [v for run in self.runs[tokenizer_id] if (v := self._gfid_of(run)) is not None]
        return float(np.mean(values)) if values else None

    def _gfid_of(self, run: DiffusionJob) -> float | None:
        """A finished run's best-CFG gFID from its store result; None if it did not finish or has none finite."""
        done = self.store.done(run) if self.outcome.get(run.ref, "") is None else None
        value = (done or {}).get("metrics", {}).get(GFID)
        return float(value) if value is not None and np.isfinite(value) else None

    def _advance(self) -> None:
        """Record every pending tokenizer whose runs are over, then propose until nothing new can be decided."""
        assert self.allocator is not None and self.state is not None
        while True:
            for t in [t for t in self.state.pending if self._over(t)]:
                stopped = all(self.stopped(r) is not None for r in self.runs[t])
                self.state = self.allocator.record(self.state, t, self.gfid(t), stopped=stopped)
            self.state, batch = self.allocator.propose(self.state)
            save_state(self.store.allocation_state, self.state)
            if not batch or not any(self._over(t) for t in batch):
                return

    def skipped_tokenizers(self) -> set[str]:
        """Tokenizers whose diffusion runs were not chosen (once the allocation is done)."""
        if self.allocator is None or self.state is None or not self.state.done:
            return set()
        return set(self.allocator.ids) - self.chosen()


def tokenizer_metrics(store: Store, tracker: Tracker) -> Features:
    """Finished tokenizers -> one row each: `tokenizer_id` and the latent/ and recon/ metrics of its MLflow run
    (what the proxy is fitted on)."""
    from raysweep.tracking.table import TOKENIZER_PREFIXES

    def table(jobs: list[TokenizerJob]) -> pd.DataFrame:
        runs = {r.info.run_id: r for r in tracker.runs("tokenizer")}
        rows = []
        for job in jobs:
            run = runs[store.run_id(job)]
            rows.append({"tokenizer_id": job.id, **{k: v for k, v in Tracker.metrics_of(run).items()
                                                    if k.startswith(TOKENIZER_PREFIXES)}})
        return pd.DataFrame(rows)

    return table


def diffusion_gpu_hours(study: StudySpec, plan: StudyPlan) -> float:
    """Estimated diffusion GPU-hours of one tokenizer (all its target trials: a ladder's cheap run is not in the
    budget), for a GPU-hour budget."""
    from raysweep.estimate.gpu_hours import estimate_gpu_hours
    from raysweep.search.estimate import proxy_estimate

    brute = proxy_estimate(estimate_gpu_hours(study, plan), study.allocation)["brute_force"]
    return float(brute["diffusion_gpu_hours"]) / max(1, len(plan.tokenizers))


def proxy_gate(study: StudySpec, plan: StudyPlan, store: Store, tracker: Tracker,
               on_done: Callable[[Allocator, AllocationState], None] | None = None) -> ProxyGate | None:
    """The gate of a study with `diffusion.allocation: proxy`, or None for `all` (every diffusion job released)."""
    spec = study.allocation
    if spec is None or not plan.diffusion:
        return None
    hours = diffusion_gpu_hours(study, plan) if spec.budget.gpu_hours is not None else None
    return ProxyGate(spec, plan, store, tokenizer_metrics(store, tracker), seed=study.seed, gpu_hours=hours,
                     on_done=on_done)


def allocation_report(study: StudySpec, tracker: Tracker, plan: StudyPlan | None = None
                      ) -> tuple[list[Any], set[str]]:
    """For the analysis of a proxy-guided study: the report's allocation section and the tokenizers whose diffusion
    trials were not chosen, from the saved state and the tracked metrics (the allocator rebuilt as the run built it).
    ([], set()) for `allocation: all` or before the allocation started."""
    from raysweep.engine.study_plan import plan_study
    from raysweep.search.report import allocation_section, fidelity_section, ladder_section

    store = Store(study.root, study.latent_storage)
    plan = plan or plan_study(study, store, analyze=False)
    gate = proxy_gate(study, plan, store, tracker)
    state = load_state(store.allocation_state)
    if gate is None or state is None:
        return [], set()
    for refs in gate.prereqs.values():  # the outcomes the store knows, as a resumed run sees them
        for ref in refs:
            gate.outcome[ref] = None if store.done(plan.by_ref()[ref]) is not None else "not finished"
    allocator = gate.build(gate.finished_tokenizers())
    skipped = set(allocator.ids) - state.chosen_ids() if state.done and not state.pending else set()
    sections = [allocation_section(allocator, state)]
    if gate.spec.fidelity is not None:
        sections.append(fidelity_section(*tier_values(tracker)))
    if gate.cheap_backbone is not None:
        cheap = {t: v for t in gate.cheap if (v := gate.cheap_gfid(t)) is not None}
        targets = sorted({r.backbone for runs in gate.runs.values() for r in runs})
        sections.append(ladder_section(cheap, dict(state.measured), gate.cheap_backbone, targets))
    return sections, skipped


def tier_values(tracker: Tracker) -> tuple[dict[str, float], dict[str, float]]:
    """From the tracked diffusion runs of a multi-fidelity study: the cheap-tier gFID (ASHA's first rung) of every
    run that reached it, and the full-tier gFID of every run that reached the full tier, by run id."""
    cheap, full = {}, {}
    for run in tracker.runs("diffusion"):
        metrics = Tracker.metrics_of(run)
        if tier_gfid_key(1) in metrics:
            cheap[run.info.run_id] = metrics[tier_gfid_key(1)]
        if run.data.tags.get(TIER_TAG) == FULL_TIER and GFID in metrics:
            full[run.info.run_id] = metrics[GFID]
    return cheap, full
