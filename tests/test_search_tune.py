"""Real Ray Tune runs: ASHA promotes and stops trials as configured; the tokenizer search runs Optuna / random over a
regularizer's declared search space under a constraint (a cheap analytic objective, not a tokenizer training)."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_ray import local_ray
from ray import tune

from raysweep.config.allocation import FidelitySpec, TokenizerSearch
from raysweep.config.search import search_space
from raysweep.config.tiers import rungs
from raysweep.search.fidelity import TIER_GFID, asha_scheduler
from raysweep.search.tokenizer_search import SEARCH_SCORE, run_tokenizer_search

MAX_ITERATIONS = 8


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    with local_ray(by_value=sys.modules[__name__]):
        yield


def rung_trainable(config: dict[str, Any]) -> None:
    """gFID at checkpoint i: the trial's quality plus a training deficit that shrinks with i."""
    for i in range(1, MAX_ITERATIONS + 1):
        tune.report({TIER_GFID: config["quality"] + 1.0 / i})


def _iterations(qualities: list[float], tmp_path: Path, name: str) -> list[int]:
    spec = FidelitySpec(grace_fraction=0.25, reduction_factor=2)
    tuner = tune.Tuner(rung_trainable, param_space={"quality": tune.grid_search(qualities)},
                       tune_config=tune.TuneConfig(scheduler=asha_scheduler(spec, MAX_ITERATIONS),
                                                   max_concurrent_trials=1, reuse_actors=True),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0))
    grid = tuner.fit()
    by_quality = {r.config["quality"]: r.metrics["training_iteration"] for r in grid}
    return [by_quality[q] for q in qualities]


def test_asha_promotes_and_stops_as_configured(tmp_path: Path) -> None:
    """One trial at a time. Best first: each later trial is worse than the recorded ones at the cheap rung (2 of 8
    checkpoints), so ASHA stops it there and only the first reaches the full tier. Worst first: each trial beats
    every recorded one at every rung, so all are promoted to the full tier."""
    grace = rungs(FidelitySpec(grace_fraction=0.25, reduction_factor=2), MAX_ITERATIONS)[0]
    assert _iterations([1.0, 2.0, 3.0, 4.0], tmp_path, "best_first") == [MAX_ITERATIONS, grace, grace, grace]
    assert _iterations([4.0, 3.0, 2.0, 1.0], tmp_path, "worst_first") == [MAX_ITERATIONS] * 4


def lcr_objective(config: dict[str, Any]) -> dict[str, float]:
    """Lower threshold and weight: a 'better latent'; reconstruction falls as the threshold rises."""
    threshold, weight = config["params"]["threshold"], config["params"]["weight"]
    return {"latent/x": (threshold - 0.62) ** 2 + weight, "recon/psnr": 30.0 - 10.0 * threshold}


def _check(result: Any, spec: TokenizerSearch) -> None:
    assert len(result.trials) == spec.num_samples
    for trial in result.trials:
        p = trial.config["params"]
        assert 0.6 <= p["threshold"] <= 0.9 and p["weight"] in (0.02, 0.05) and trial.config["steps"] == 5
        assert trial.feasible == (30.0 - 10.0 * p["threshold"] >= 23.0)
        assert trial.metrics["latent/x"] == pytest.approx(lcr_objective(trial.config)["latent/x"])
    feasible = [t for t in result.trials if t.feasible]
    if feasible:
        assert result.best.metrics["latent/x"] == min(t.metrics["latent/x"] for t in feasible)
        assert result.best.metrics[SEARCH_SCORE] == result.best.metrics["latent/x"]
    else:
        assert result.best is None


def test_random_search_is_seeded_and_respects_the_constraint(tmp_path: Path) -> None:
    space = search_space({"regularizer": "lcr", "params": "search", "steps": 5, "num_samples": 3})
    spec = TokenizerSearch(objective="latent/x", algorithm="random", num_samples=3, constraint="recon/psnr >= 23")
    first = run_tokenizer_search(space, lcr_objective, spec, 11, str(tmp_path), "random_a")
    again = run_tokenizer_search(space, lcr_objective, spec, 11, str(tmp_path), "random_b")
    _check(first, spec)
    assert sorted(str(t.config) for t in first.trials) == sorted(str(t.config) for t in again.trials)


def test_optuna_search_runs_over_the_declared_space(tmp_path: Path) -> None:
    space = search_space({"regularizer": "lcr", "params": {"threshold": "search", "weight": 0.02}, "steps": 5})
    spec = TokenizerSearch(objective="latent/x", algorithm="optuna", num_samples=5, constraint="recon/psnr >= 23")
    result = run_tokenizer_search(space, lambda c: lcr_objective({"params": {"weight": 0.02, **c["params"]}}), spec,
                                  3, str(tmp_path), "optuna")
    assert all(t.config["params"]["weight"] == 0.02 for t in result.trials)  # the explicit param is kept
    _check(result, spec)
