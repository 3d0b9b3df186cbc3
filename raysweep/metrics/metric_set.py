"""The one latent-metric engine: a set of named accumulators run as one (init / update / merge / finalize over
all of them), so `raysweep metrics`, the study's latent-metric jobs, the metric pool's actors and the tests build
and run metrics the same way.

One validated batch feeds every metric (its cache shares per-batch summaries between them), and states merge
exactly under any split of the data, so a pool of actors gives the numbers of one pass. `key(upstream)` is the
latent-metric job's content key (`config.plan.MetricJob`: one entry per metric of its name, parameters resolved
over the class defaults and class `version`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from raysweep.metrics.base import Accumulator, LatentBatchLike, LatentStats, State, Value, check_batch
from raysweep.metrics.registry import build_metric, metrics_consuming

States = dict[str, State]  # metric name -> its accumulator state


class MetricSet:
    """Latent metrics `names` with the study's `params` ({name: {param: value}}); `footer` holds what each metric
    takes from the latent set's footer statistics (`with_footer`), which the study's own parameters override and
    which the content key leaves out (the latents, and so their statistics, are the upstream's)."""

    def __init__(self, names: Iterable[str], params: Mapping[str, Mapping[str, Any]] | None = None,
                 footer: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.names = tuple(names)
        params = params or {}
        stray = sorted(set(params) - set(self.names))
        if stray:
            raise ValueError(f"params given for metric(s) {', '.join(stray)} not in names {list(self.names)}")
        self.params = {n: dict(params[n]) for n in self.names if n in params}
        self.footer = {n: dict(p) for n, p in (footer or {}).items() if n in self.names and p}
        self.metrics: dict[str, Accumulator] = {
            n: build_metric(n, Accumulator, **{**self.footer.get(n, {}), **self.params.get(n, {})})
            for n in self.names}

    def __reduce__(self) -> tuple[Any, ...]:  # travels to actors as its configuration, rebuilt there
        return MetricSet, (self.names, self.params, self.footer)

    def with_footer(self, stats: LatentStats) -> MetricSet:
        """The same set given what each metric takes from a latent set's footer (e.g. spatial's channel
        statistics, without which it holds every latent)."""
        return MetricSet(self.names, self.params, {n: type(m).footer_params(stats) for n, m in self.metrics.items()})

    def init(self) -> States:
        return {n: m.init() for n, m in self.metrics.items()}

    def update(self, states: States, batch: LatentBatchLike) -> States:
        checked = check_batch(batch)  # validated once; its cache shares per-batch summaries between metrics
        return {n: m.update(states[n], checked) for n, m in self.metrics.items()}

    def merge(self, a: States, b: States) -> States:
        return {n: m.merge(a[n], b[n]) for n, m in self.metrics.items()}

    def finalize(self, states: States) -> dict[str, Value]:
        """{MLflow key: float | array} over every metric."""
        return {k: v for n, m in self.metrics.items() for k, v in m.finalize(states[n]).items()}

    def keys(self) -> dict[str, tuple[str, ...]]:
        """Metric name -> every key it returns."""
        return {n: m.keys for n, m in self.metrics.items()}

    def used_params(self, shape: tuple[int, int, int]) -> dict[str, dict[str, Any]]:
        """Metric name -> the parameters it uses on latents of `shape` (e.g. spatial distances scaled to the grid):
        what the run's `metrics.<name>.<param>` tags record."""
        return {n: m.params(shape) for n, m in self.metrics.items()}

    def key(self, upstream: str) -> str:
        """The content key of these metrics on the latents of `upstream` (a tokenizer's key): the key of the
        latent-metric job that runs them."""
        from raysweep.config.plan import LatentMetricJob

        return LatentMetricJob.of("", upstream, self.names, self.params).key

    def run(self, batches: Iterable[LatentBatchLike]) -> dict[str, Value]:
        """One pass over `batches`, finalized."""
        states = self.init()
        for batch in batches:
            states = self.update(states, batch)
        return self.finalize(states)


def compute_metrics(batches: Iterable[LatentBatchLike], names: list[str] | None = None,
                    params: dict[str, dict[str, Any]] | None = None) -> dict[str, Value]:
    """Run the named latent metrics (default: all) over the batches in one pass; returns {key: float | array}."""
    return MetricSet(names if names is not None else metrics_consuming("latents"), params).run(batches)
