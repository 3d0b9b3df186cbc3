"""`tokenizers.search` in `raysweep run`: the search job runs a Ray Tune search (`raysweep.search.tokenizer_search`)
whose every trial hands a sub-plan — one tokenizer job and its metric jobs — to the runner's scheduler
(`SearchEnv.run_jobs`) and returns the tokenizer's metrics.

A search trial's tokenizer job runs as the same one-trial Tune experiment (`tokenizers-<key>`) any `TokenizerJob`
runs, so the tokenizer is stored under its content key, tracked as a normal tokenizer run, never trained twice and
resumed from its checkpoint; its metric jobs write their usual markers. After the search, the plan made anew
(`engine.study_plan.plan_study`) finds them all finished. The search trial itself only waits: the tokenizer's trial
holds the tokenizer's resources and the metric jobs (Ray tasks) the metric actor's, so the search trial asks a token
CPU share (Tune refuses a trial of no resources), and at most as many search trials run at once as tokenizer trials
fit on the cluster. A cut-off search is restored by Tune with its searcher's state (`run_tokenizer_search`).

The job's result (its store marker) lists the tokenizers in search order with their metrics, score and feasibility.
MLflow: a search run (stage `SEARCH_STAGE`) under the study run names its trials and, once the plan confirms them,
the confirmed ones; each tokenizer run carries its search score, feasibility, order and whether it was confirmed
(keys in `tracking/keys.py`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from raysweep.config.plan import (
    LatentMetricJob,
    ModelMetricJob,
    StudyPlan,
    TokenizerJob,
    TokenizerSearchJob,
    Upstream,
)
from raysweep.config.spec import MetricsSpec, TokenizerTrial
from raysweep.engine.context import TrialContext
from raysweep.engine.executors import Task
from raysweep.engine.stage import StudyRun, resources
from raysweep.engine.store import Store
from raysweep.hashing import flatten
from raysweep.tracking import Tracker
from raysweep.tracking.keys import (
    SEARCH_BEST,
    SEARCH_CHOSEN_TAG,
    SEARCH_CONFIRMED_TAG,
    SEARCH_FEASIBLE,
    SEARCH_FEASIBLE_COUNT,
    SEARCH_ORDER,
    SEARCH_RUN_TAG,
    SEARCH_SCORE,
    SEARCH_STAGE,
    SEARCH_TRIALS_TAG,
)

WAIT_CPU = 0.01  # what a search trial asks: it waits for its tokenizer's own trial


@dataclass(frozen=True)
class SearchEnv:
    """What a search trial needs (picklable): the study's trial context and metric jobs, and what runs a sub-plan
    (`run_jobs`: the runner's scheduler over the same stages, from inside the trial)."""

    ctx: TrialContext
    upstream: Upstream  # the study's dataset and reference keys, in every tokenizer's key
    latent: tuple[str, ...]  # latent metric names (the metric pool's), run on the tokenizer's latents
    model: tuple[str, ...]  # metrics that need the tokenizer itself
    metrics: MetricsSpec
    tokenizer: dict[str, float]  # Ray resources of a tokenizer trial
    storage: str  # Ray Tune's storage path
    run_jobs: Callable[[StudyPlan], None]
    search_run_id: str = ""


def searched_trial(config: dict[str, Any]) -> TokenizerTrial:
    """A search trial's config as a tokenizer trial, named after its regularizer and content key."""
    trial = TokenizerTrial(**{k: v for k, v in config.items() if k != "id"})
    trial.id = f"{trial.regularizer}-{trial.key()[:6]}"
    return trial


def trial_plan(trial: TokenizerTrial, env: SearchEnv) -> StudyPlan:
    """A search trial's sub-plan: its tokenizer, then the tokenizer's metric jobs."""
    tok = TokenizerJob.of(trial, env.upstream)
    metrics = [job_type.of(tok.id, tok.key, names, env.metrics.params, deps=(tok.ref,))
               for job_type, names in ((LatentMetricJob, env.latent), (ModelMetricJob, env.model)) if names]
    return StudyPlan((tok, *metrics))


def train_search_trial(env: SearchEnv, config: dict[str, Any]) -> dict[str, float]:
    """The search's objective: run the trial's sub-plan (its tokenizer trained or found trained, its metric jobs),
    and return its reconstruction and latent metrics as tracked on its run."""
    from raysweep.tracking.table import TOKENIZER_PREFIXES

    plan = trial_plan(searched_trial(config), env)
    env.run_jobs(plan)
    tracker = Tracker(env.ctx.tracking_uri, env.ctx.experiment)
    run_id = env.ctx.store.run_id(plan.tokenizers[0])
    tracker.set_tags(run_id, {SEARCH_RUN_TAG: env.search_run_id})
    return {k: v for k, v in Tracker.metrics_of(tracker.client.get_run(run_id)).items()
            if k.startswith(TOKENIZER_PREFIXES)}


def task(job: TokenizerSearchJob, run: StudyRun) -> Task:
    """The search job drives the search only: its trials' tokenizer trials and metric tasks hold the resources."""
    study = run.study
    if run.run_jobs is None:
        raise RuntimeError(f"{job.ref}: a tokenizer search runs its trials' jobs through `StudyRun.run_jobs`")
    metrics = study.metrics
    env = SearchEnv(run.ctx, Upstream.of(study), metrics.consuming("latents"), metrics.consuming("tokenizer"), metrics,
                    resources(study.resources.tokenizer), study.tune_storage, run.run_jobs)
    return Task(job.ref, "task", run_search_job, (env, job, study.seed), {}, ray_resources={})


def _concurrency(need: dict[str, float]) -> int:
    """How many tokenizer trials fit on the cluster at once (at least one)."""
    import ray

    total = ray.cluster_resources()
    return max(1, min((int(total.get(k, 0.0) // v) for k, v in need.items() if v > 0), default=1))


def run_search_job(env: SearchEnv, job: TokenizerSearchJob, seed: int) -> None:
    """The search job: a search run, the Tune search, then the job's marker (tokenizers in search order, each once)
    and the search's metrics on every tokenizer run."""
    from raysweep.search.tokenizer_search import best_feasible, run_tokenizer_search

    tracker, store = Tracker(env.ctx.tracking_uri, env.ctx.experiment), env.ctx.store
    run_id = tracker.open_run(job.id, SEARCH_STAGE, job.key, parent_id=env.ctx.study_run_id,
                              params=flatten({"search": job.spec.model_dump(), "space": job.space}))
    env = replace(env, search_run_id=run_id)
    try:
        result = run_tokenizer_search(job.space, partial(train_search_trial, env), job.spec, seed, env.storage,
                                      name=f"{SEARCH_STAGE}-{job.key}", resources={"CPU": WAIT_CPU},
                                      max_concurrent=_concurrency(env.tokenizer))
        seen: set[str] = set()
        trials = []
        for t in result.trials:  # two search trials may draw the same tokenizer: it is one tokenizer
            trial = searched_trial(t.config)
            if trial.id not in seen:
                seen.add(trial.id or "")
                trials.append((trial, t))
        if not trials:
            raise RuntimeError(f"no search trial finished; first error: {(result.errors or ('none',))[0]}")
        runs = {tok.id: store.run_id(tok) for tok in (TokenizerJob.of(trial, env.upstream) for trial, _ in trials)}
        for order, (tokenizer_run, (_, t)) in enumerate(zip(runs.values(), trials)):
            tracker.log_metrics(tokenizer_run, {SEARCH_SCORE: t.metrics[SEARCH_SCORE],
                                                 SEARCH_FEASIBLE: float(t.feasible), SEARCH_ORDER: float(order)})
        best = best_feasible([t for _, t in trials], 1)
        tracker.log_metrics(run_id, {SEARCH_FEASIBLE_COUNT: float(sum(t.feasible for _, t in trials)),
                                     **({SEARCH_BEST: best[0].metrics[job.spec.objective]} if best else {})})
        tracker.set_tags(run_id, {SEARCH_TRIALS_TAG: ",".join(runs)})
    except Exception as err:
        tracker.finish(run_id, "FAILED", reason=f"{type(err).__name__}: {err}")
        raise
    store.mark_done(store.cached_marker(job), {"run_id": run_id, "errors": list(result.errors),
                                        "trials": [{"trial": trial.model_dump(), "metrics": t.metrics,
                                                    "feasible": t.feasible} for trial, t in trials]})
    tracker.finish(run_id)


def tag_confirmed(plan: StudyPlan, store: Store, tracker: Tracker) -> None:
    """Once the plan has the search's tokenizers: which were confirmed (got the study's diffusion trials), on the
    search run (best first) and on every tokenizer run. Tags are idempotent: a rerun sets the same values."""
    from raysweep.engine.study_plan import search_outcome

    search = plan.search
    done = None if search is None else store.done(search)
    found = None if search is None else search_outcome(search, store)
    if done is None or found is None:
        return
    tracker.set_tags(done["run_id"], {SEARCH_CHOSEN_TAG: ",".join(found.confirmed)})
    for tok in plan.tokenizers:
        tracker.set_tags(store.run_id(tok), {SEARCH_CONFIRMED_TAG: str(tok.id in found.confirmed).lower()})
