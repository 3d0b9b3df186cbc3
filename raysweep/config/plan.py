"""The study plan: every job a study runs, as frozen typed values with content keys and dependencies.

Derived from the study file alone (no Ray, MLflow or finished upstream job), so `plan`, `validate`, `status`, the
estimate, the analysis and the scheduler all see the same jobs. Keys are those the store has always used: a
tokenizer's `trial.key()`, and a diffusion run's hash of its trial, seed, tokenizer key and evaluation, so existing
stores keep their results. A job is named by its `ref` (stage, study id): study ids repeat across stages (the
tokenizer `vf` and its latent metrics `vf`), refs do not.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from raysweep.config.spec import DiffusionTrial, EvaluationSpec, StudySpec, TokenizerTrial
from raysweep.hashing import config_hash

if TYPE_CHECKING:
    from raysweep.metrics.base import Consumes

JobRef = tuple[str, str]  # (stage, study id)
ANALYSIS_ID = "analysis"


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
        for trial in study.tokenizer_trials:
            tok = TokenizerJob(trial.id or trial.key(), trial.key(), trial=trial)
            jobs.append(tok)
            ready = [tok.ref]
            for job_type, names in ((LatentMetricJob, latent), (ModelMetricJob, model)):
                if names:
                    jobs.append(job_type(tok.id, tok.key, names=names, deps=(tok.ref,)))
                    ready.append(jobs[-1].ref)
            for dif in study.diffusion_trials:
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
