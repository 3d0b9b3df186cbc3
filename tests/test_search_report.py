"""Honest reporting: predictions only under pred/* keys and in their own column; plan estimate beside brute force."""
from __future__ import annotations

import numpy as np
import pytest

from raysweep.analysis.rank_agreement import rank_agreement
from raysweep.analysis.tidy import METRIC_PREFIXES
from raysweep.config.allocation import FidelitySpec, ProxyAllocation
from raysweep.config.tiers import rungs
from raysweep.search.allocation import Allocator
from raysweep.search.estimate import DIFFUSION_STAGES, fidelity_fractions, proxy_estimate
from raysweep.search.replay import synthetic_study
from raysweep.search.report import allocation_section, fidelity_section, predicted_metrics
from raysweep.tracking.keys import MEASURED, PRED_GFID, PRED_GFID_HI, PRED_GFID_LO, PRED_PREFIX, PREDICTED

STUDY = synthetic_study(0.87, seed=1, n=20)


def _allocated() -> tuple[Allocator, object]:
    allocator = Allocator.create(ProxyAllocation(budget={"trials": 8}, stop={"never": True}), list(STUDY.ids),
                                 STUDY.features, STUDY.metric, seed=0)
    truth = dict(zip(STUDY.ids, STUDY.gfid))
    state = allocator.start()
    while True:
        state, batch = allocator.propose(state)
        if not batch:
            return allocator, state
        for t in batch:
            state = allocator.record(state, t, truth[t])


def test_predicted_values_never_appear_under_measured_keys() -> None:
    allocator, state = _allocated()
    logged = predicted_metrics(allocator, state)
    measured = state.measured_ids()
    assert set(logged) == set(STUDY.ids) - measured and len(measured) == 8
    keys = {k for metrics in logged.values() for k in metrics}
    assert all(k.startswith(PRED_PREFIX) and not k.startswith(METRIC_PREFIXES) for k in keys)
    for metrics in logged.values():
        assert metrics[PRED_GFID_LO] < metrics[PRED_GFID] < metrics[PRED_GFID_HI]
    section = allocation_section(allocator, state)
    frame = section.frame.set_index("tokenizer_id")
    assert (frame["source"] == MEASURED).sum() == 8 and (frame["source"] == PREDICTED).sum() == 12
    truth = dict(zip(STUDY.ids, STUDY.gfid))
    for t, row in frame.iterrows():  # measured gFID only in `gfid`, predictions only in `predicted_gfid`
        if row["source"] == MEASURED:
            assert row["gfid"] == truth[t] and np.isnan(row["predicted_gfid"])
        else:
            assert np.isnan(row["gfid"]) and row["predicted_gfid"] == logged[t][PRED_GFID]
    assert "8 tokenizers measured, 12 predicted" in section.note and "leave-one-out, n = 8" in section.note


def _estimate(diffusion: tuple[float, float, float], other: float, trials: int) -> dict:
    stages = {name: {"gpu_hours": h} for name, h in zip(DIFFUSION_STAGES, diffusion)}
    stages["tokenizer_training"] = {"gpu_hours": other}
    return {"gpu_hours": sum(diffusion) + other, "stages": stages,
            "counts": {"diffusion_trials": trials, "tokenizers": trials // 2}}


def test_plan_estimate_beside_brute_force() -> None:
    est = _estimate((60.0, 30.0, 10.0), 40.0, 100)
    assert proxy_estimate(est, None)["proxy"] is None
    out = proxy_estimate(est, ProxyAllocation(budget={"trials": 0.3}))
    assert out["brute_force"]["gpu_hours"] == 140.0 and out["brute_force"]["diffusion_gpu_hours"] == 100.0
    assert out["proxy"]["diffusion_trials"] == 30
    assert out["proxy"]["gpu_hours"] == pytest.approx(40.0 + 30.0)
    odd = proxy_estimate(est, ProxyAllocation(budget={"trials": 0.35}))  # 35 trials = 17 whole tokenizers of 2
    assert odd["proxy"]["diffusion_trials"] == 34 and odd["proxy"]["diffusion_gpu_hours"] == pytest.approx(34.0)
    capped = proxy_estimate(est, ProxyAllocation(budget={"trials": 0.3, "gpu_hours": 12.0}))
    assert capped["proxy"]["diffusion_gpu_hours"] == 12.0


def test_fidelity_cost_is_successive_halving() -> None:
    spec = ProxyAllocation(fidelity={"grace_fraction": 0.25, "reduction_factor": 2, "sample_fraction": 0.5})
    assert rungs(spec.fidelity, 8) == [2, 4, 8]
    train, sample = fidelity_fractions(spec, 8)
    # all trials train 2 of 8 checkpoints, half train 2 more, a quarter the last 4; scoring at each rung reached
    assert train == pytest.approx((2 + 2 / 2 + 4 / 4) / 8)
    assert sample == pytest.approx(0.5 + 0.5 / 2 + 1 / 4)
    est = proxy_estimate(_estimate((60.0, 30.0, 10.0), 0.0, 10), spec, checkpoints=8)
    assert est["proxy"]["diffusion_gpu_hours"] == pytest.approx(60.0 * train + 40.0 * sample)
    assert rungs(FidelitySpec(grace_fraction=0.1, reduction_factor=3), 3) == [1, 3]


def test_tier_agreement() -> None:
    full = {f"t{i}": float(i) for i in range(6)}
    same = rank_agreement({t: 2 * v + 1 for t, v in full.items()}, full, top_k=2)
    assert same.spearman == pytest.approx(1.0) and same.top_k_overlap == 1.0 and same.n == 6
    swapped = rank_agreement({**full, "t0": 1.5, "t1": 0.5, "t2": 5.5, "x": 0.0}, full, top_k=3)
    assert swapped.n == 6 and swapped.top_k_overlap == pytest.approx(2 / 3)
    row = fidelity_section({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 3.0, "b": 2.0, "c": 1.0}, 1).frame.iloc[0]
    assert row["spearman"] == pytest.approx(-1.0) and row["top_k_overlap"] == 0.0 and row["trials_with_both"] == 3
    row = fidelity_section({"a": 1.0, "b": 2.0, "c": 3.0, "d": 9.0}, {"a": 3.0, "b": 2.0}, 1).frame.iloc[0]
    assert (row["trials_at_cheap_rung"], row["reached_full_tier"], row["trials_with_both"]) == (4, 2, 2)
