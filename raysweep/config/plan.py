"""The study plan: every job a study runs, as frozen typed values with content keys and dependencies.

Derived from the study file alone (no Ray, MLflow or finished upstream job), so `plan`, `validate`, `status`, the
estimate, the analysis and the scheduler all see the same jobs. One exception: the tokenizers of a
`tokenizers.search` exist only once the search has run. Until then the plan holds the search job and its
`ConfirmationSlot`s (diffusion trials for tokenizers still unknown); once the search's result is in the store, the
plan holds the tokenizers it trained (with their metric jobs, after the search job) and the diffusion trials of the
best `confirm` feasible ones. Keys are those the store has always used: a tokenizer's `trial.key()`, and a diffusion
run's hash of its trial, seed, tokenizer key and evaluation, so existing stores keep their results. A job is named
by its `ref` (stage, study id): study ids repeat across stages (the tokenizer `vf` and its latent metrics `vf`), refs
do not.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from raysweep.config.allocation import TokenizerSearch, tokenizer_search_of
from raysweep.config.spec import DiffusionTrial, EvaluationSpec, StudySpec, TokenizerTrial
from raysweep.hashing import config_hash

if TYPE_CHECKING:
    from raysweep.metrics.base import Consumes

JobRef = tuple[str, str]  # (stage, study id)
ANALYSIS_ID = "analysis"
SEARCH_ID = "search"


def diffusion_key(trial: DiffusionTrial, seed: int, tokenizer_key: str, evaluation: EvaluationSpec) -> str:
    """The content key of one diffusion run: what it trains (trial, seed, tokenizer) and how it is scored."""
    return config_hash({"diffusion": trial.key(), "seed": seed, "tokenizer": tokenizer_key,
                        "evaluation": evaluation.model_dump()})


def metric_names(study: StudySpec, consumes: Consumes) -> tuple[str, ...]:
    """The study's metrics that run on `consumes` (their registered class's typed base): latents (the metric
    pool), a tokenizer or a diffusion model."""
    from raysweep.metrics.registry import metric_info  # torch: imported when a plan is made, not with the config

    return tuple(n for n in study.metrics.names if metric_info(n).consumes == consumes)


@dataclass(frozen=True)
class Job:
    """One unit of work: `id` is its study id, `key` its content key in the store, `deps` the refs it waits for."""

    stage: ClassVar[str]
    tolerate_failed_deps: ClassVar[bool] = False  # runs after its deps even when some failed
    id: str
    key: str
    deps: tuple[JobRef, ...] = field(default=(), kw_only=True)

    @property
    def ref(self) -> JobRef:
        return (self.stage, self.id)


@dataclass(frozen=True)
class TokenizerJob(Job):
    stage: ClassVar[str] = "tokenizer"
    trial: TokenizerTrial = field(kw_only=True)


@dataclass(frozen=True)
class LatentMetricJob(Job):
    """Metrics computed from a tokenizer's validation latents; `key` is the tokenizer's (they live under it)."""

    stage: ClassVar[str] = "latent_metrics"
    names: tuple[str, ...] = field(kw_only=True)


@dataclass(frozen=True)
class ModelMetricJob(Job):
    """Metrics of the tokenizer itself (`TokenizerMetric`s: equivariance, distortion, iFID); `key` is the
    tokenizer's."""

    stage: ClassVar[str] = "model_metrics"
    names: tuple[str, ...] = field(kw_only=True)


@dataclass(frozen=True)
class DiffusionJob(Job):
    stage: ClassVar[str] = "diffusion"
    tokenizer: TokenizerJob = field(kw_only=True)
    trial: DiffusionTrial = field(kw_only=True)
    seed: int = field(kw_only=True)

    @property
    def backbone(self) -> str:
        return self.trial.backbone


@dataclass(frozen=True)
class DiffusionMetricJob(Job):
    """Metrics of a trained diffusion model (`DiffusionMetric`s: the velocity Fisher); `key` is the diffusion
    run's."""

    stage: ClassVar[str] = "diffusion_metrics"
    diffusion: DiffusionJob = field(kw_only=True)
    names: tuple[str, ...] = field(kw_only=True)


@dataclass(frozen=True)
class TokenizerSearchJob(Job):
    """`tokenizers.search`: a Ray Tune search that trains `spec.num_samples` tokenizers (each a normal tokenizer
    under its own key, with its metric jobs). `trial` is the block's first draw: what the estimate prices each
    search trial at. `space` is the block's trial fields with their domains."""

    stage: ClassVar[str] = "tokenizer_search"
    spec: TokenizerSearch = field(kw_only=True)
    space: dict[str, Any] = field(kw_only=True, hash=False, compare=False)
    trial: TokenizerTrial = field(kw_only=True)


@dataclass(frozen=True)
class ConfirmationSlot(Job):
    """A diffusion trial of the search's `rank`-th best tokenizer (1 = best), unknown until the search ends: planned
    so that `plan`, `status` and the estimate count it; never run (the plan is made anew once the search ends)."""

    stage: ClassVar[str] = "diffusion"
    rank: int = field(kw_only=True)
    trial: DiffusionTrial = field(kw_only=True)
    seed: int = field(kw_only=True)


def search_key(study: StudySpec, spec: TokenizerSearch, space: dict[str, Any]) -> str:
    """The content key of a tokenizer search: what it searches, how, and from which seed."""
    return config_hash({"search": spec.key(), "space": space, "seed": study.seed})


def searched_trials(study: StudySpec, job: TokenizerSearchJob) -> tuple[list[TokenizerTrial], list[str]] | None:
    """The tokenizers a finished search trained (search order) and the ids of those it confirms (best first); None
    until the search's result is in the store."""
    from raysweep.pipeline.store import Store
    from raysweep.search.tokenizer_search import SearchTrial, best_feasible

    done = Store(study.root, study.latent_storage).done(job)
    if done is None:
        return None
    trials = [SearchTrial(t["trial"], t["metrics"], t["feasible"]) for t in done["trials"]]
    confirmed = [t.config["id"] for t in best_feasible(trials, job.spec.confirm)]
    return [TokenizerTrial(**t.config) for t in trials], confirmed


@dataclass(frozen=True)
class AnalysisJob(Job):
    """The correlation analysis of every tracked run; it also reports the failed ones."""

    stage: ClassVar[str] = "analysis"
    tolerate_failed_deps: ClassVar[bool] = True


@dataclass(frozen=True)
class StudyPlan:
    """Every job of a study in a topological order (each job after its deps)."""

    jobs: tuple[Job, ...]

    @classmethod
    def from_spec(cls, study: StudySpec, analyze: bool = True) -> StudyPlan:
        latent, model, diffusion = (metric_names(study, n) for n in ("latents", "tokenizer", "diffusion"))
        jobs: list[Job] = []
        tokenizers = [(t, True) for t in study.tokenizer_trials]  # (trial, gets diffusion trials)
        after: tuple[JobRef, ...] = ()
        spec = tokenizer_search_of(study)
        if spec is not None:
            from raysweep.search.tokenizer_search import search_space

            space = search_space(study.tokenizers or {}, study.source)
            search = TokenizerSearchJob(SEARCH_ID, search_key(study, spec, space), spec=spec, space=space,
                                        trial=study.tokenizer_trials[0])
            jobs.append(search)
            after = (search.ref,)
            found = searched_trials(study, search)
            tokenizers = [] if found is None else [(t, t.id in found[1]) for t in found[0]]
            if found is None:
                jobs += [ConfirmationSlot(f"{SEARCH_ID}-best{rank}/{dif.backbone}/{seed}", "", rank=rank, trial=dif,
                                          seed=seed, deps=after)
                         for rank in range(1, spec.confirm + 1) for dif in study.diffusion_trials
                         for seed in study.diffusion_seeds]
        for trial, diffuse in tokenizers:
            tok = TokenizerJob(trial.id or trial.key(), trial.key(), trial=trial, deps=after)
            jobs.append(tok)
            ready = [tok.ref]
            for job_type, names in ((LatentMetricJob, latent), (ModelMetricJob, model)):
                if names:
                    jobs.append(job_type(tok.id, tok.key, names=names, deps=(tok.ref,)))
                    ready.append(jobs[-1].ref)
            for dif in study.diffusion_trials if diffuse else ():
                for seed in study.diffusion_seeds:
                    run = DiffusionJob(f"{tok.id}/{dif.backbone}/{seed}",
                                       diffusion_key(dif, seed, tok.key, study.evaluation),
                                       tokenizer=tok, trial=dif, seed=seed, deps=tuple(ready))
                    jobs.append(run)
                    if diffusion:
                        jobs.append(DiffusionMetricJob(run.id, run.key, diffusion=run, names=diffusion,
                                                       deps=(run.ref,)))
        if analyze:
            jobs.append(AnalysisJob(ANALYSIS_ID, study.key(), deps=tuple(j.ref for j in jobs)))
        return cls(tuple(jobs))

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def of(self, job_type: type[Any]) -> list[Any]:
        """The jobs of one type, in plan order (e.g. `plan.of(DiffusionJob)`)."""
        return [j for j in self.jobs if isinstance(j, job_type)]

    def by_ref(self) -> dict[JobRef, Job]:
        return {j.ref: j for j in self.jobs}

    @property
    def tokenizers(self) -> list[TokenizerJob]:
        return self.of(TokenizerJob)

    @property
    def diffusion(self) -> list[DiffusionJob]:
        return self.of(DiffusionJob)

    @property
    def search(self) -> TokenizerSearchJob | None:
        """The study's tokenizer search, if it has one."""
        return next(iter(self.of(TokenizerSearchJob)), None)
