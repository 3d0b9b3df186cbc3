"""A study's plan as its store knows it: `StudyPlan.from_spec` given the outcome of the study's tokenizer search once
it has ended (the one input of a plan that is not in the study file). Build it once per command and pass it on."""
from __future__ import annotations

from raysweep.config.plan import SearchOutcome, StudyPlan, TokenizerSearchJob, search_job
from raysweep.config.spec import StudySpec, TokenizerTrial
from raysweep.engine.store import Store


def search_outcome(job: TokenizerSearchJob, store: Store) -> SearchOutcome | None:
    """The tokenizers a finished search trained (search order) and the ids of those it confirms (best first); None
    until the search's result is in the store."""
    from raysweep.search.tokenizer_search import SearchTrial, best_feasible

    done = store.done(job)
    if done is None:
        return None
    trials = [SearchTrial(t["trial"], t["metrics"], t["feasible"]) for t in done["trials"]]
    confirmed = tuple(t.config["id"] for t in best_feasible(trials, job.spec.confirm))
    return SearchOutcome(tuple(TokenizerTrial(**t.config) for t in trials), confirmed)


def plan_study(study: StudySpec, store: Store | None = None, analyze: bool = True) -> StudyPlan:
    """The plan of `study` with its search's outcome from `store` (default: the study's own)."""
    search = search_job(study)
    store = store or Store(study.root, study.latent_storage)
    return StudyPlan.from_spec(study, analyze, searched=None if search is None else search_outcome(search, store))
