"""`tokenizers.search`: find a regularizer's most diffusable setting at a fixed reconstruction quality with a Ray Tune
search algorithm — Optuna's TPE (`OptunaSearch`) or random draws (`BasicVariantGenerator`) — over the tokenizer
block's search domains (`params: search` expands to the regularizer's declared `search_space`).

The trainable (`objective`) trains and scores one tokenizer and returns its metrics; each trial reports them plus
`SEARCH_SCORE`: the objective oriented for minimisation, plus `PENALTY` times the constraint's violation when the
constraint fails, so TPE learns to avoid infeasible regions while the best trial is chosen among feasible ones only.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raysweep.config.allocation import TokenizerSearch
from raysweep.config.search import to_tune
from raysweep.tracking.keys import SEARCH_SCORE

PENALTY = 1e6
Objective = Callable[[dict[str, Any]], Mapping[str, float]]


@dataclass(frozen=True)
class SearchTrial:
    config: dict[str, Any]
    metrics: dict[str, float]
    feasible: bool


@dataclass(frozen=True)
class SearchResult:
    """All finished trials in search order; `best` is the best feasible one (None if none is); `errors` those of
    the trials that failed."""

    trials: tuple[SearchTrial, ...]
    best: SearchTrial | None
    errors: tuple[str, ...] = ()


def best_feasible(trials: Sequence[SearchTrial], k: int) -> list[SearchTrial]:
    """The `k` feasible trials of lowest score, best first (ties in search order): the ones to confirm."""
    feasible = [t for t in trials if t.feasible]
    return sorted(feasible, key=lambda t: t.metrics[SEARCH_SCORE])[:k]


def violation(metrics: Mapping[str, float], spec: TokenizerSearch) -> float:
    """How far the constraint is missed (0 when met or absent); a missing constraint metric is infinitely far."""
    parts = spec.constraint_parts()
    if parts is None:
        return 0.0
    name, op, bound = parts
    value = metrics.get(name)
    if value is None or value != value:
        return float("inf")
    return max(0.0, bound - value) if op == ">=" else max(0.0, value - bound)


def score(metrics: Mapping[str, float], spec: TokenizerSearch) -> float:
    """The objective for minimisation, penalised by the constraint's violation."""
    value = float(metrics[spec.objective]) * (1.0 if spec.mode == "min" else -1.0)
    return value + PENALTY * min(violation(metrics, spec), 1e6)


def _search_alg(spec: TokenizerSearch, seed: int) -> Any:
    if spec.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=SEARCH_SCORE, mode="min", seed=seed)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def _created(result: Any) -> int:
    """A trial's place in the search: Tune's experiment tag starts with its creation counter (a restored
    experiment lists its trials in another order)."""
    tag = str((result.metrics or {}).get("experiment_tag", ""))
    return int(tag.split("_")[0]) if tag.split("_")[0].isdigit() else 1 << 30


def run_tokenizer_search(space: dict[str, Any], objective: Objective, spec: TokenizerSearch, seed: int,
                         storage_path: str, name: str = "tokenizer_search",
                         resources: Mapping[str, float] | None = None,
                         max_concurrent: int | None = None) -> SearchResult:
    """Run `spec.num_samples` trials of `objective` over `space` (study-file domains) on the current Ray, at most
    `max_concurrent` at once. An experiment of that name cut off earlier is restored (Tune keeps the searcher's
    state and the finished trials with it) and continued instead of started anew."""
    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        metrics = {k: float(v) for k, v in objective(config).items()}
        tune.report({**metrics, SEARCH_SCORE: score(metrics, spec)})

    runnable = tune.with_resources(trainable, dict(resources or {"cpu": 1}))
    path = f"{str(storage_path).rstrip('/')}/{name}"
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=runnable, resume_errored=True)
    else:
        tuner = tune.Tuner(runnable, param_space=to_tune(space),
                           tune_config=tune.TuneConfig(search_alg=_search_alg(spec, seed),
                                                       num_samples=spec.num_samples, metric=SEARCH_SCORE,
                                                       mode="min", reuse_actors=True,
                                                       max_concurrent_trials=max_concurrent),
                           run_config=tune.RunConfig(storage_path=storage_path, name=name, verbose=0))
    trials, errors = [], []
    grid = tuner.fit()
    for result in sorted((grid[i] for i in range(len(grid))), key=_created):
        if result.error is None and result.metrics and SEARCH_SCORE in result.metrics:
            metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(k, str) and "/" in k
                       and isinstance(v, (int, float))}
            trials.append(SearchTrial(dict(result.config or {}), metrics, violation(metrics, spec) == 0))
        elif result.error is not None:
            cause = getattr(result.error, "cause", None) or result.error
            errors.append(f"{type(cause).__name__}: {cause}".splitlines()[0][:500])
    best = best_feasible(trials, 1)
    return SearchResult(tuple(trials), best[0] if best else None, tuple(errors))
