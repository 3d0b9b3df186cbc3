"""The study plan: every job a study runs, as frozen typed values with content keys and dependencies.

Derived from the study file alone (no Ray, MLflow, store or finished upstream job), so `plan`, `validate`,
`status`, the estimate, the analysis and the scheduler all see the same jobs. One exception: the tokenizers of a
`tokenizers.search` exist only once the search has run. Until then the plan holds the search job and its
`ConfirmationSlot`s (diffusion trials for tokenizers still unknown); given the search's outcome (`SearchOutcome`,
read from the store by `engine.study_plan`), it holds the tokenizers it trained (with their metric jobs, after the
search job) and the diffusion trials of the best `confirm` feasible ones. A job's key is the hash of its `inputs`,
everything that determines its result (recorded readable in its `result.json`, so `status` can name what changed):
a tokenizer's trial fields, dataset, reference network (settings and code version) and code version; each metric's
upstream key, name, resolved parameters and class `version` (one entry per metric in its job's marker: adding a
metric computes only that one); a diffusion run's training (trial, seed, tokenizer, code version, and what it
measures while it trains: its convergence curve or its ASHA rungs, which a re-score cannot measure again) apart from
its evaluation (settings, scorer), so editing the evaluation re-scores the saved model. `engine/migrate.py` keeps the
formulas of earlier versions' keys. A job is named by its `ref` (stage, study id): study ids repeat across stages
(the tokenizer `vf` and its latent metrics `vf`), refs do not.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from raysweep.config.allocation import TokenizerSearch
from raysweep.config.spec import (
    DISPLAY_FIELDS,
    DatasetSpec,
    DiffusionTrial,
    ReferenceSpec,
    ScorerSpec,
    StudySpec,
    TokenizerTrial,
)
from raysweep.config.tiers import Tiers
from raysweep.hashing import config_hash, plain

Stage = Literal["reference", "tokenizer_search", "tokenizer", "latent_metrics", "model_metrics", "diffusion",
                "diffusion_metrics", "analysis"]
STAGES: tuple[Stage, ...] = ("reference", "tokenizer_search", "tokenizer", "latent_metrics", "model_metrics",
                             "diffusion", "diffusion_metrics", "analysis")
JobRef = tuple[str, str]  # (stage, study id)
ANALYSIS_ID = "analysis"
SEARCH_ID = "search"
TOKENIZER_CODE_VERSION = 1  # bump when the tokenizer stage's training or encoding changes its results
DIFFUSION_CODE_VERSION = 1  # bump when the diffusion stage's training changes its results
SCORER_CODE_VERSION = 1  # bump when a study-trained extra scorer's network or training changes its features
REFERENCE_CODE_VERSION = 1  # bump when the domain network (the study-trained FID network) or its training changes
STOPPED_RESULT = "stopped"  # in the result of a diffusion trial ASHA stopped: {"rung": r, "reason": ...}


def dataset_key(spec: DatasetSpec) -> str:
    return config_hash(spec.model_dump())


def reference_inputs(spec: ReferenceSpec) -> dict[str, Any]:
    """The scoring network's settings and its code version: what a tokenizer's key and an evaluation key hold of it."""
    return {**spec.model_dump(), "version": REFERENCE_CODE_VERSION}


def reference_key(spec: ReferenceSpec, dataset: str) -> str:
    """The scoring network and its reference statistics: the dataset it is fitted to, its settings, its code."""
    return config_hash({"dataset": dataset, **reference_inputs(spec)})


def scorer_key(spec: ScorerSpec, dataset: str) -> str:
    """A study-trained extra scorer (stage 0): the dataset it is fitted to and its settings. It enters the diffusion
    evaluation key only (through `evaluation.scorers`), never a tokenizer's or a diffusion run's training key."""
    return config_hash({"dataset": dataset, "scorer": spec.model_dump(), "version": SCORER_CODE_VERSION})


@dataclass(frozen=True)
class Upstream:
    """The study-wide inputs of every tokenizer's key, readable: the dataset and the reference (scoring) network's
    settings and code version (with the dataset, what `reference_key` hashes)."""

    dataset: Mapping[str, Any]
    reference: Mapping[str, Any]

    @classmethod
    def of(cls, study: StudySpec) -> Upstream:
        return cls(study.dataset.model_dump(), reference_inputs(study.reference))


def tokenizer_inputs(trial: TokenizerTrial, upstream: Upstream) -> dict[str, Any]:
    return plain({"trial": trial.model_dump(exclude=set(DISPLAY_FIELDS)), "dataset": upstream.dataset,
                  "reference": upstream.reference, "version": TOKENIZER_CODE_VERSION})


@dataclass(frozen=True)
class Curve:
    """The convergence curve a run outside ASHA measures while it trains: its cheap gFID with `samples` samples at
    every checkpoint (every `every` training steps)."""

    samples: int
    every: int


# the evaluation settings the training measures with (the curve's samples): in the training key, not the evaluation's
TRAINING_EVALUATION_FIELDS = frozenset({"checkpoint_samples"})


def measured_in_training(study: StudySpec, trial: DiffusionTrial, cheap: bool = False
                         ) -> tuple[Curve | None, Tiers | None]:
    """What a diffusion run measures while it trains, beside its model: a target trial under multi-fidelity gFID
    (`allocation.fidelity`; a backbone ladder's `cheap` run runs alone) its ASHA rungs, any other its convergence
    curve unless `evaluation.checkpoint_samples` is 0. `storage.checkpoint_every` counts only with one of them:
    alone it is where Tune checkpoints, which changes no result."""
    fidelity = study.allocation.fidelity if study.allocation is not None else None
    every = study.storage.checkpoint_every
    if fidelity is not None and not cheap:
        return None, Tiers.of(fidelity, trial.steps, every, study.evaluation.num_samples)
    samples = study.evaluation.checkpoint_samples
    return (Curve(samples, every) if samples else None), None


def diffusion_inputs(trial: DiffusionTrial, seed: int, tokenizer_key: str, curve: Curve | None,
                     tiers: Tiers | None) -> dict[str, Any]:
    """What a diffusion run trains (the backbone is a trial field) and measures while it trains (`curve`, `tiers`:
    a re-score cannot measure them again): its training key's inputs."""
    return plain({"trial": trial.model_dump(), "seed": seed, "tokenizer": tokenizer_key,
                  "version": DIFFUSION_CODE_VERSION, "curve": None if curve is None else asdict(curve),
                  "tiers": None if tiers is None else asdict(tiers)})


def evaluation_inputs(training_key: str, study: StudySpec, upstream: Upstream) -> dict[str, Any]:
    """How a trained diffusion model is scored: its evaluation key's inputs."""
    return plain({"training": training_key, "evaluation": study.evaluation.model_dump(
        exclude=set(TRAINING_EVALUATION_FIELDS)), "scorer": upstream.reference})


def metric_inputs(name: str, params: Mapping[str, Any], upstream_key: str) -> dict[str, Any]:
    """One metric's key inputs: its upstream, name, parameters resolved over the class's defaults, and `version`."""
    from raysweep.metrics.registry import metric_info

    factory = metric_info(name).factory
    defaults = {k: p.default for k, p in inspect.signature(factory).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return plain({"upstream": upstream_key, "metric": name, "params": {**defaults, **params},
                  "version": factory.version})


@dataclass(frozen=True)
class Job:
    """One unit of work: `id` is its study id, `key` its content key in the store, `deps` the refs it waits for."""

    stage: ClassVar[Stage]
    tolerate_failed_deps: ClassVar[bool] = False  # runs after its deps even when some failed
    id: str
    key: str
    deps: tuple[JobRef, ...] = field(default=(), kw_only=True)
    inputs: Mapping[str, Any] = field(default_factory=dict, kw_only=True, hash=False, compare=False)

    @property
    def ref(self) -> JobRef:
        return (self.stage, self.id)

    def record(self) -> dict[str, Any]:
        """What the job's stored result records beside its values: the readable inputs of its key (and, where the
        marker's path does not hold the whole key, what `current` checks)."""
        return {"inputs": dict(self.inputs)}

    def current(self, result: Mapping[str, Any]) -> bool:
        """Whether a result found at the job's marker is this job's (the marker's path holds its key)."""
        return True

    def stale_inputs(self, result: Mapping[str, Any]) -> list[str]:
        """The dotted input fields whose recorded values differ from this job's (none recorded: none known)."""
        return changed_fields(result.get("inputs"), self.inputs)


def changed_fields(recorded: Any, planned: Any, prefix: str = "") -> list[str]:
    """`a.b` for each leaf where two input dicts differ; [] when nothing was recorded."""
    if recorded is None:
        return []
    if isinstance(recorded, Mapping) and isinstance(planned, Mapping):
        return [f for k in sorted(set(recorded) | set(planned))
                for f in (changed_fields(recorded.get(k), planned.get(k), f"{prefix}{k}.")
                          if k in recorded and k in planned else [f"{prefix}{k}"])]
    return [] if recorded == planned else [prefix.rstrip(".")]


@dataclass(frozen=True)
class TokenizerJob(Job):
    stage: ClassVar[Stage] = "tokenizer"
    trial: TokenizerTrial = field(kw_only=True)

    @classmethod
    def of(cls, trial: TokenizerTrial, upstream: Upstream, deps: tuple[JobRef, ...] = ()) -> TokenizerJob:
        inputs = tokenizer_inputs(trial, upstream)
        return cls(trial.id or trial.key(), config_hash(inputs), trial=trial, deps=deps, inputs=inputs)


@dataclass(frozen=True)
class MetricEntry:
    """One metric of a metric job: its own key and inputs (an entry of the job's marker)."""

    name: str
    key: str
    inputs: Mapping[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True)
class MetricJob(Job):
    """Metrics of one upstream result (`upstream`: the key of the directory they live under), each with its own
    entry in the job's marker: the job is finished when every entry is current, and runs only the others."""

    upstream: str = field(kw_only=True)
    metrics: tuple[MetricEntry, ...] = field(kw_only=True)

    @classmethod
    def of(cls, job_id: str, upstream: str, names: tuple[str, ...], params: Mapping[str, Mapping[str, Any]],
           deps: tuple[JobRef, ...] = (), **fields: Any) -> Any:
        entries = []
        for name in names:
            inputs = metric_inputs(name, params.get(name, {}), upstream)
            entries.append(MetricEntry(name, config_hash(inputs), inputs))
        key = config_hash({e.name: e.key for e in entries})
        return cls(job_id, key, upstream=upstream, metrics=tuple(entries), deps=deps,
                   inputs={e.name: e.inputs for e in entries}, **fields)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.metrics)

    def record(self) -> dict[str, Any]:
        return {"metrics": {e.name: {"key": e.key, "inputs": dict(e.inputs)} for e in self.metrics}}

    def missing(self, result: Mapping[str, Any] | None) -> tuple[str, ...]:
        """The metrics whose entry in the stored result is absent or of another key."""
        entries = (result or {}).get("metrics")
        entries = entries if isinstance(entries, Mapping) else {}  # a list: a marker of the previous version
        return tuple(e.name for e in self.metrics if (entries.get(e.name) or {}).get("key") != e.key)

    def current(self, result: Mapping[str, Any]) -> bool:
        return not self.missing(result)

    def stale_inputs(self, result: Mapping[str, Any]) -> list[str]:
        entries = result.get("metrics")
        entries = entries if isinstance(entries, Mapping) else {}
        return [f"{e.name}.{f}" for e in self.metrics if e.name in entries
                for f in changed_fields(entries[e.name].get("inputs"), e.inputs)]


@dataclass(frozen=True)
class LatentMetricJob(MetricJob):
    """Metrics computed from a tokenizer's validation latents; `upstream` is the tokenizer's key."""

    stage: ClassVar[Stage] = "latent_metrics"


@dataclass(frozen=True)
class ModelMetricJob(MetricJob):
    """Metrics of the tokenizer itself (`TokenizerMetric`s: equivariance, distortion, iFID); `upstream` is the
    tokenizer's key."""

    stage: ClassVar[Stage] = "model_metrics"


def scored_under(result: Mapping[str, Any], evaluation_key: str) -> bool:
    """Whether a diffusion result holds the scores of `evaluation_key` (or ASHA stopped it before any scoring)."""
    return result.get("evaluation_key") == evaluation_key or STOPPED_RESULT in result


@dataclass(frozen=True)
class DiffusionJob(Job):
    """`key` is the training key (the store directory, the MLflow run); the job is finished when its result was
    scored under `evaluation_key` (a trial ASHA stopped: whatever the evaluation). `curve` and `tiers` are what the
    run measures while it trains (`measured_in_training`, in its key): what the trial measures."""

    stage: ClassVar[Stage] = "diffusion"
    tokenizer: TokenizerJob = field(kw_only=True)
    trial: DiffusionTrial = field(kw_only=True)
    seed: int = field(kw_only=True)
    evaluation_key: str = field(kw_only=True)
    evaluation: Mapping[str, Any] = field(kw_only=True, hash=False, compare=False)
    curve: Curve | None = field(default=None, kw_only=True)
    tiers: Tiers | None = field(default=None, kw_only=True)

    @property
    def backbone(self) -> str:
        return self.trial.backbone

    def record(self) -> dict[str, Any]:
        return {**super().record(), "evaluation_key": self.evaluation_key, "evaluation_inputs": dict(self.evaluation)}

    def current(self, result: Mapping[str, Any]) -> bool:
        return scored_under(result, self.evaluation_key)

    def stale_inputs(self, result: Mapping[str, Any]) -> list[str]:
        stale = super().stale_inputs(result)  # the training's, else the evaluation's (which holds the training key)
        return stale or ([] if STOPPED_RESULT in result else changed_fields(result.get("evaluation_inputs"),
                                                                           self.evaluation))


@dataclass(frozen=True)
class DiffusionMetricJob(MetricJob):
    """Metrics of a trained diffusion model (`DiffusionMetric`s: the velocity Fisher); `upstream` is the diffusion
    run's training key (they do not depend on its evaluation)."""

    stage: ClassVar[Stage] = "diffusion_metrics"
    diffusion: DiffusionJob = field(kw_only=True)


@dataclass(frozen=True)
class TokenizerSearchJob(Job):
    """`tokenizers.search`: a Ray Tune search that trains `spec.num_samples` tokenizers (each a normal tokenizer
    under its own key, with its metric jobs). `trial` is the block's first draw: what the estimate prices each
    search trial at. `space` is the block's trial fields with their domains."""

    stage: ClassVar[Stage] = "tokenizer_search"
    spec: TokenizerSearch = field(kw_only=True)
    space: dict[str, Any] = field(kw_only=True, hash=False, compare=False)
    trial: TokenizerTrial = field(kw_only=True)


@dataclass(frozen=True)
class ConfirmationSlot(Job):
    """A diffusion trial of the search's `rank`-th best tokenizer (1 = best), unknown until the search ends: planned
    so that `plan`, `status` and the estimate count it; never run (the plan is made anew once the search ends)."""

    stage: ClassVar[Stage] = "diffusion"
    rank: int = field(kw_only=True)
    trial: DiffusionTrial = field(kw_only=True)
    seed: int = field(kw_only=True)


def search_key(study: StudySpec, spec: TokenizerSearch, space: dict[str, Any]) -> str:
    """The content key of a tokenizer search: what it searches, how, and from which seed."""
    return config_hash({"search": spec.key(), "space": space, "seed": study.seed})


def search_job(study: StudySpec) -> TokenizerSearchJob | None:
    """The study's `tokenizers.search` as a job, if it has one."""
    spec, space = study.search, study.search_space
    if spec is None or space is None:
        return None
    return TokenizerSearchJob(SEARCH_ID, search_key(study, spec, space), spec=spec, space=space,
                              trial=study.tokenizer_trials[0])


@dataclass(frozen=True)
class SearchOutcome:
    """A finished tokenizer search: the tokenizers it trained (search order), the ids it confirms (best first)."""

    trials: tuple[TokenizerTrial, ...]
    confirmed: tuple[str, ...]


@dataclass(frozen=True)
class AnalysisJob(Job):
    """The correlation analysis of every tracked run; it also reports the failed ones."""

    stage: ClassVar[Stage] = "analysis"
    tolerate_failed_deps: ClassVar[bool] = True


@dataclass(frozen=True)
class StudyPlan:
    """Every job of a study in a topological order (each job after its deps)."""

    jobs: tuple[Job, ...]

    @classmethod
    def from_spec(cls, study: StudySpec, analyze: bool = True, searched: SearchOutcome | None = None) -> StudyPlan:
        """The plan of `study`, from the study alone and, for a `tokenizers.search`, its outcome once it has ended
        (`engine.study_plan.plan_study` reads it from the store)."""
        latent, model, diffusion = (study.metrics.consuming(n) for n in ("latents", "tokenizer", "diffusion"))
        upstream, params = Upstream.of(study), study.metrics.params
        cheap = study.ladder_trial  # a backbone ladder's cheap tier: one more diffusion run per tokenizer
        jobs: list[Job] = []
        tokenizers = [(t, True) for t in study.tokenizer_trials]  # (trial, gets diffusion trials)
        after: tuple[JobRef, ...] = ()
        search = search_job(study)
        if search is not None:
            jobs.append(search)
            after = (search.ref,)
            tokenizers = [] if searched is None else [(t, t.id in searched.confirmed) for t in searched.trials]
            if searched is None:
                jobs += [ConfirmationSlot(f"{SEARCH_ID}-best{rank}/{dif.backbone}/{seed}", "", rank=rank, trial=dif,
                                          seed=seed, deps=after)
                         for rank in range(1, search.spec.confirm + 1) for dif in study.diffusion_trials
                         for seed in study.diffusion_seeds]
        for trial, diffuse in tokenizers:
            tok = TokenizerJob.of(trial, upstream, deps=after)
            jobs.append(tok)
            ready = [tok.ref]
            for job_type, names in ((LatentMetricJob, latent), (ModelMetricJob, model)):
                if names:
                    jobs.append(job_type.of(tok.id, tok.key, names, params, deps=(tok.ref,)))
                    ready.append(jobs[-1].ref)
            # a backbone ladder: its cheap run first (the first seed); the target runs wait for it
            runs = [(cheap, study.diffusion_seeds[0])] if cheap is not None and diffuse else []
            runs += [(dif, seed) for dif in (study.diffusion_trials if diffuse else ())
                     for seed in study.diffusion_seeds]
            for dif, seed in runs:
                curve, tiers = measured_in_training(study, dif, cheap=dif is cheap)
                inputs = diffusion_inputs(dif, seed, tok.key, curve, tiers)
                key = config_hash(inputs)
                evaluation = evaluation_inputs(key, study, upstream)
                run = DiffusionJob(f"{tok.id}/{dif.backbone}/{seed}", key, tokenizer=tok, trial=dif, seed=seed,
                                   deps=tuple(ready), inputs=inputs, evaluation_key=config_hash(evaluation),
                                   evaluation=evaluation, curve=curve, tiers=tiers)
                jobs.append(run)
                if dif is cheap:
                    ready.append(run.ref)
                if diffusion:
                    jobs.append(DiffusionMetricJob.of(run.id, run.key, diffusion, params, deps=(run.ref,),
                                                      diffusion=run))
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
    def keys(self) -> frozenset[str]:
        """Every job's content key: a tracked run whose key is not among them ran on inputs the study no longer
        has (`raysweep.tracking.table.study_table(planned=...)`)."""
        return frozenset(j.key for j in self.jobs if j.key)

    @property
    def search(self) -> TokenizerSearchJob | None:
        """The study's tokenizer search, if it has one."""
        return next(iter(self.of(TokenizerSearchJob)), None)
