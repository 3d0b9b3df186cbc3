"""The allocation state machine: deterministic for a seed, inside its budget, resumable from its JSON state."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysweep.config.allocation import ProxyAllocation
from raysweep.search.acquisition import calibration_picks
from raysweep.search.allocation import BUDGET, EXHAUSTED, SETTLED, AllocationState, Allocator, load_state, save_state
from raysweep.search.proxy import fit_proxy
from raysweep.search.replay import synthetic_study

STUDY = synthetic_study(0.87, seed=4, n=30)
TRUTH = dict(zip(STUDY.ids, STUDY.gfid))


def _allocator(seed: int = 0, trials_per_tokenizer: int = 1, gpu_hours: np.ndarray | None = None,
               **spec: object) -> Allocator:
    return Allocator.create(ProxyAllocation(**spec), list(STUDY.ids), STUDY.features, STUDY.metric,
                            trials_per_tokenizer, gpu_hours, seed)


def _run(allocator: Allocator, state: AllocationState | None = None, rounds: int = 10_000,
         truth: dict[str, float] = TRUTH) -> tuple[AllocationState, list[list[str]]]:
    state = state or allocator.start()
    batches = []
    for _ in range(rounds):
        state, batch = allocator.propose(state)
        if not batch:
            break
        batches.append(batch)
        for t in batch:
            state = allocator.record(state, t, truth[t])
    return state, batches


def test_choices_are_deterministic_for_a_seed() -> None:
    spec = {"budget": {"trials": 12}, "stop": {"never": True}, "acquisition": {"rule": "information"}}
    a, b, c = (_run(_allocator(seed, **spec))[1] for seed in (5, 5, 6))
    assert a == b
    assert a[0] == c[0] and len(a[0]) == 4  # calibration: one batch, no draws
    assert a[1:] != c[1:]                    # acquisition draws


def test_greedy_acquisition_launches_the_lowest_predicted_gfids_without_draws() -> None:
    spec = {"budget": {"trials": 9}, "stop": {"never": True}, "acquisition": {"batch": 2}}
    allocator = _allocator(5, **spec)
    state, batches = _run(allocator, rounds=1)
    state, batch = allocator.propose(replace(state, measured=tuple((t, TRUTH[t]) for t in batches[0]), pending=()))
    rows = [i for i, t in enumerate(STUDY.ids) if t not in batches[0]]
    fit = fit_proxy(STUDY.features[[allocator.index[t] for t in batches[0]]], np.array([TRUTH[t] for t in batches[0]]),
                    STUDY.features)
    lowest = np.array(rows)[np.argsort(fit.predict(STUDY.features[rows]).mean)[:2]]
    assert batch == [STUDY.ids[i] for i in lowest]
    assert _run(_allocator(5, **spec))[1] == _run(_allocator(6, **spec))[1]  # no draws: seed-free


@pytest.mark.parametrize(("budget", "per_tok", "expected_trials"), [
    ({"trials": 7}, 1, 7), ({"trials": 0.25}, 1, 8), ({"trials": 9}, 2, 8), ({"trials": 0.5}, 3, 45)])
def test_trial_budget_is_respected(budget: dict, per_tok: int, expected_trials: int) -> None:
    state, batches = _run(_allocator(trials_per_tokenizer=per_tok, budget=budget, stop={"never": True}))
    assert state.done == BUDGET
    assert state.trials_spent == expected_trials == per_tok * sum(map(len, batches))
    assert len(state.measured) == expected_trials // per_tok


def test_gpu_hour_budget_is_respected() -> None:
    hours = np.linspace(1.0, 3.0, len(STUDY.ids))
    state, _ = _run(_allocator(gpu_hours=hours, budget={"gpu_hours": 20.0}, stop={"never": True},
                               acquisition={"batch": 3}))
    spent = sum(hours[STUDY.ids.index(t)] for t, _ in state.measured)
    assert state.done == BUDGET and spent <= 20.0 and state.gpu_hours_spent == pytest.approx(spent)
    cheapest_left = min(h for t, h in zip(STUDY.ids, hours) if t not in state.measured_ids())
    assert spent + cheapest_left > 20.0 - 3.0  # it stopped because the next batch did not fit, not earlier


def test_a_resumed_allocation_continues_with_the_same_state(tmp_path: Path) -> None:
    spec = {"budget": {"trials": 14}, "stop": {"never": True}, "acquisition": {"batch": 2}}
    whole, whole_batches = _run(_allocator(3, **spec))
    half, first = _run(_allocator(3, **spec), rounds=4)
    path = tmp_path / "allocation.json"
    save_state(path, half)
    loaded = load_state(path)
    assert loaded == half
    resumed, rest = _run(_allocator(3, **spec), loaded)  # a fresh Allocator, as in a new driver process
    assert first + rest == whole_batches and resumed == whole


def test_pending_results_survive_a_resume_and_acquisition_waits_for_them(tmp_path: Path) -> None:
    allocator = _allocator(budget={"trials": 10}, calibration={"count": 3})
    state, batch = allocator.propose(allocator.start())
    assert len(batch) == 3
    state = allocator.record(state, batch[0], TRUTH[batch[0]])
    save_state(tmp_path / "s.json", state)
    state = load_state(tmp_path / "s.json")
    assert state.pending == tuple(batch[1:])
    assert allocator.propose(state) == (state, [])  # no acquisition on half the calibration results
    state = allocator.record(allocator.record(state, batch[1], None), batch[2], TRUTH[batch[2]])
    assert state.failed == (batch[1],) and len(state.measured) == 2
    state, nxt = allocator.propose(state)
    assert len(nxt) == 1 and nxt[0] not in batch  # the failed calibration pick is replaced
    with pytest.raises(ValueError, match="not pending"):
        allocator.record(state, batch[0], 1.0)


def test_calibration_spans_the_proxy_range() -> None:
    x = STUDY.features
    picks = calibration_picks(x, 5, column=0)
    assert picks[0] == int(np.argmin(x[:, 0])) and picks[-1] == int(np.argmax(x[:, 0]))
    ranks = np.argsort(np.argsort(x[:, 0]))[picks]
    np.testing.assert_allclose(ranks, np.linspace(0, len(x) - 1, 5), atol=0.5)
    pc = calibration_picks(x, 4)
    assert len(set(pc)) == 4


def test_calibration_measures_every_feature_slope() -> None:
    """On a 5 x 5 grid of two features the D-optimal picks are the four corners, the design that measures both
    slopes best (quantiles along the first principal component took (0,0), (1,3), (3,1), (4,4)), and the proxy
    fitted on them finds the grid's best tokenizer, gFID = 10 + i - 2 j, exactly linear."""
    i, j = np.divmod(np.arange(25), 5)
    x = np.column_stack([i, j]).astype(float)
    picks = calibration_picks(x, 4)
    assert sorted(picks) == [0, 4, 20, 24]
    y = 10.0 + i - 2.0 * j
    assert int(np.argmin(fit_proxy(x[picks], y[picks], x).predict(x).mean)) == int(np.argmin(y)) == 4


def test_a_cheap_tier_calibrates_on_its_lowest_gfids() -> None:
    """A cheap tier's gFID (the last feature) is the target at low fidelity: calibration measures its `count` lowest,
    not the D-optimal corners; `calibration.by` still names quantiles of a feature."""
    cheap = 2.0 * STUDY.gfid + 1.0 + 0.1 * np.cos(np.arange(len(STUDY.ids)))
    x = np.column_stack([STUDY.features, cheap])
    ids = list(STUDY.ids)

    def first(spec: ProxyAllocation, tier: int | None) -> list[str]:
        allocator = Allocator.create(spec, ids, x, STUDY.metric, cheap=tier)
        return allocator.propose(allocator.start())[1]

    lowest = [ids[i] for i in np.argsort(cheap)[:4]]
    assert first(ProxyAllocation(), 2) == lowest and STUDY.best in lowest
    assert first(ProxyAllocation(), None) == [ids[i] for i in calibration_picks(x, 4)] != lowest
    by = ProxyAllocation(features=["latent/velocity/viv", "recon/psnr"], calibration={"by": "recon/psnr"})
    assert first(by, 2) == [ids[i] for i in calibration_picks(x, 4, column=1)]


def test_a_strong_proxy_settles_before_brute_force_and_a_weak_one_measures_more() -> None:
    state, _ = _run(_allocator(2))
    assert state.done == SETTLED and len(state.measured) < len(STUDY.ids)
    assert min(state.measured, key=lambda m: m[1])[0] == STUDY.best
    weak = synthetic_study(0.3, seed=4, n=30)
    allocator = Allocator.create(ProxyAllocation(), list(weak.ids), weak.features, weak.metric, seed=2)
    weak_state, _ = _run(allocator, truth=dict(zip(weak.ids, weak.gfid)))
    assert len(weak_state.measured) > len(state.measured)


def test_everything_measured_is_exhausted() -> None:
    state, _ = _run(_allocator(stop={"never": True}))
    assert state.done == EXHAUSTED and state.measured_ids() == set(STUDY.ids)


def test_from_table_takes_the_tokenizer_columns() -> None:
    table = pd.DataFrame({"tokenizer_id": list(STUDY.ids), "latent/velocity/viv": STUDY.features[:, 0],
                          "recon/psnr": STUDY.features[:, 1], "gen/gfid": STUDY.gfid, "backbone": "SiT-T"})
    table.loc[3, "recon/psnr"] = np.nan
    allocator = Allocator.from_table(ProxyAllocation(), table)
    np.testing.assert_array_equal(allocator.features, STUDY.features[:, :1])  # psnr is incomplete: left out
    np.testing.assert_array_equal(allocator.metric, STUDY.metric)
    with pytest.raises(ValueError, match="tok03"):
        Allocator.from_table(ProxyAllocation(features=["latent/velocity/viv", "recon/psnr"]), table)
