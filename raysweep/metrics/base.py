"""The accumulator contract shared by every latent metric: init / update / merge / finalize over plain states.

A state is a dict of numpy arrays, lists of arrays, `Moments`, tuples and nested dicts of those: picklable, so it
travels between Ray actors. `update(state, batch)` is `merge(state, summarise(batch))` and `merge` is one generic
field-wise rule (arrays and scalars add, lists concatenate, `Moments` combine, dicts merge by key, tuples must be
equal), so a metric is exact under any split of the data into batches or actors by construction, up to float
rounding. Metrics that need all samples at once keep small per-image summaries and do the work in `finalize`.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import numpy as np

State = dict[str, Any]
Value = float | np.ndarray
T = TypeVar("T")
Consumes = Literal["latents", "tokenizer", "diffusion"]  # what a metric runs on, so the plan knows its job


class LatentBatchLike(Protocol):
    """What metrics read from a batch; `raysweep.data.LatentBatch` fits. Numpy arrays: sample_id [B] int,
    label [B] int, latent [B,C,H,W] float (un-normalised), fg_mask [B,H,W] (non-zero = foreground) or None."""

    @property
    def sample_id(self) -> np.ndarray: ...
    @property
    def label(self) -> np.ndarray: ...
    @property
    def latent(self) -> np.ndarray: ...
    @property
    def fg_mask(self) -> np.ndarray | None: ...


class LatentStats(Protocol):
    """What a latent set's Parquet footer says about it; `raysweep.data.LatentMeta` fits. float64 [C] each."""

    channel_mean: np.ndarray
    channel_std: np.ndarray


@dataclass(frozen=True)
class Batch:
    """A validated batch: sample_id [B] int64, label [B] int64, latent [B,C,H,W] float32, fg_mask [B,H,W] bool.

    `derived` caches per-batch summaries that several metrics share in one pass (channel moments, pooled
    features), so `compute_metrics` pays for each once per batch."""

    sample_id: np.ndarray
    label: np.ndarray
    latent: np.ndarray
    fg_mask: np.ndarray | None
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one latent."""
        c, h, w = self.latent.shape[1:]
        return int(c), int(h), int(w)

    def derived(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()` once per batch under `key`; later calls return the cached value."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    @property
    def channels(self) -> Moments:
        """Per-channel moments over N, H, W (cached)."""
        return self.derived("channels", lambda: channel_moments(self.latent))


def check_batch(batch: LatentBatchLike) -> Batch:
    """Validate shapes, dtypes and finiteness once, at the boundary; raise ValueError naming the bad field.
    An already validated `Batch` is returned as it is (with its cache)."""
    if isinstance(batch, Batch):
        return batch
    latent = np.asarray(batch.latent)
    if latent.ndim != 4 or not np.issubdtype(latent.dtype, np.floating):
        raise ValueError(f"latent must be a float array [B,C,H,W], got {latent.dtype} of shape {latent.shape}")
    bad = int(latent.size - np.count_nonzero(np.isfinite(latent)))
    if bad:
        raise ValueError(f"latent has {bad} non-finite values (NaN or inf); metrics need finite latents")
    n, _, h, w = latent.shape
    fields = {name: np.asarray(getattr(batch, name)) for name in ("sample_id", "label")}
    for name, value in fields.items():
        if value.shape != (n,) or not np.issubdtype(value.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array of shape ({n},), got {value.dtype} {value.shape}")
    mask = batch.fg_mask
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (n, h, w):
            raise ValueError(f"fg_mask must have shape {(n, h, w)} (latent resolution), got {mask.shape}")
        mask = mask != 0
    return Batch(fields["sample_id"].astype(np.int64), fields["label"].astype(np.int64),
                 latent.astype(np.float32, copy=False), mask)


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of a set of arrays over some axes.

    `a + b` is the pairwise update of Chan, Golub and LeVeque: exact under merge and free of the cancellation of
    raw sums of squares. `mean` and `m2` have the shape of the data with the reduced axes removed.
    """

    count: float
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, axis: tuple[int, ...]) -> Moments:
        """Moments of x over `axis` in float64 (float32 data is read as it is, never copied whole to float64:
        when the leading axis is reduced, the squared deviations are summed block by block of it, in a
        cache-sized float64 buffer; one whole-batch buffer was a third slower)."""
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        mean = x.mean(axis=axis, dtype=np.float64, keepdims=True)
        step = max(1, (1 << 19) // max(1, x.size // max(1, len(x)))) if 0 in axis else max(1, len(x))
        m2 = sum((np.square(np.subtract(x[i:i + step], mean, dtype=np.float64)).sum(axis=axis)
                  for i in range(0, len(x), step)), start=np.zeros(np.squeeze(mean, axis=axis).shape))
        return cls(float(np.prod([x.shape[a] for a in axis])), np.squeeze(mean, axis=axis), m2)

    def __add__(self, other: Moments) -> Moments:
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + np.square(delta) * (self.count * other.count / count)
        return Moments(count, mean, m2)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation, with 1 where it is 0 (a constant channel is only centred)."""
        std = np.sqrt(self.m2 / self.count)
        return np.where(std > 0, std, 1.0)


def channel_moments(latent: np.ndarray) -> Moments:
    """Per-channel moments over N, H, W of latent [B,C,H,W]: the statistics of per-channel standardisation."""
    return Moments.of(latent, axis=(0, 2, 3))


def merge_values(a: Any, b: Any) -> Any:
    """The one merge rule for state fields (see the module docstring)."""
    if isinstance(a, dict):
        keys = sorted(a.keys() | b.keys())
        return {k: merge_values(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in keys}
    if isinstance(a, tuple):
        if a != b:
            raise ValueError(f"cannot merge states whose invariant fields differ: {a} and {b}")
        return a
    return a + b


class KeyedMetric(ABC):
    """A registered metric's identity, shared by latent accumulators and model-dependent metrics: output keys are
    MLflow names `latent/<perspective>/<metric>` (a curve `k` has its grid under `k_grid`). `consumes` is set by
    the typed base a metric derives from (`Accumulator`, or `TokenizerMetric` / `DiffusionMetric` in
    `raysweep.metrics.model.base`): it decides which job of the plan runs the metric."""

    name: ClassVar[str]
    perspective: ClassVar[str]
    consumes: ClassVar[Consumes]

    def key(self, metric: str) -> str:
        return f"latent/{self.perspective}/{metric}"

    @property
    @abstractmethod
    def keys(self) -> tuple[str, ...]:
        """Every key the metric returns (scalars, curves and their grids)."""

    @property
    @abstractmethod
    def higher_is_better(self) -> dict[str, bool]:
        """Direction of each headline scalar (diagnostics and curves are left out)."""


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric: its class (keyword parameters come from the study YAML) and a summary. Perspective and
    directions are read from the class, so they cannot drift from what it logs."""

    factory: type[KeyedMetric]
    summary: str

    @property
    def perspective(self) -> str:
        return self.factory.perspective

    @property
    def consumes(self) -> Consumes:
        return self.factory.consumes

    @property
    def directions(self) -> dict[str, bool]:
        """Headline keys (default parameters) -> higher is better."""
        return self.factory().higher_is_better

    def build(self, label: str, **params: Any) -> Any:
        """The configured metric; parameter names outside the class's signature raise ValueError listing them."""
        allowed = list(inspect.signature(self.factory).parameters)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"{label}: unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        return self.factory(**params)


class Accumulator(KeyedMetric):
    """A latent metric as a mergeable accumulator. Subclasses implement `summarise` and `_finalize`."""

    consumes: ClassVar[Consumes] = "latents"

    @classmethod
    def footer_params(cls, stats: LatentStats) -> dict[str, Any]:
        """Parameters the metric takes from the latent set's footer statistics, which the stage gives it under
        the study's own parameters (a metric that cannot stream without them says so here); none by default."""
        return {}

    def params(self, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
        """The parameters in effect for latents of `shape` (C, H, W), for logging."""
        return {}

    def init(self) -> State:
        return {}

    def update(self, state: State, batch: LatentBatchLike) -> State:
        checked = check_batch(batch)
        if len(checked.label) == 0:
            return state
        return self.merge(state, self.summarise(checked))

    def merge(self, a: State, b: State) -> State:
        if not a or not b:
            return a or b
        if a["shape"] != b["shape"]:
            raise ValueError(f"metric '{self.name}': cannot merge states of different latent shapes "
                             f"{a['shape']} and {b['shape']}")
        return merge_values(a, b)

    def finalize(self, state: State) -> dict[str, Value]:
        if not state:
            raise ValueError(f"metric '{self.name}': no latents were accumulated")
        return self._finalize(state)

    @abstractmethod
    def summarise(self, batch: Batch) -> State:
        """One validated, non-empty batch -> a state holding `shape` (C, H, W) and mergeable fields."""

    @abstractmethod
    def _finalize(self, state: State) -> dict[str, Value]:
        """A non-empty merged state -> {key: float | array}."""


def merge_all(acc: Accumulator, states: Iterable[State]) -> State:
    """Merge any number of states (from batches or actors), in any order."""
    merged = acc.init()
    for state in states:
        merged = acc.merge(merged, state)
    return merged


def run_accumulator(acc: Accumulator, batches: Iterable[LatentBatchLike]) -> dict[str, Value]:
    """One accumulator over an iterable of batches, in process."""
    state = acc.init()
    for batch in batches:
        state = acc.update(state, batch)
    return acc.finalize(state)
