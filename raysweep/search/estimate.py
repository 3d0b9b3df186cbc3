"""`raysweep plan --json` for a proxy-guided study: its GPU-hours beside brute force, from the brute-force estimate
(`estimate/gpu_hours.py estimate_gpu_hours`) and the allocation spec. An upper bound: the allocation stops earlier
when the answer settles, which no plan can know in advance."""
from __future__ import annotations

from typing import Any

import numpy as np

from raysweep.config.allocation import ProxyAllocation
from raysweep.config.tiers import rungs

DIFFUSION_STAGES = ("diffusion_training", "sampling", "sample_scoring")


def fidelity_fractions(spec: ProxyAllocation, checkpoints: int) -> tuple[float, float]:
    """(training, sampling+scoring) compute of one trial under ASHA over a full-tier trial: a fraction eta^-i of the
    trials trains from rung i-1 to rung i and is scored there (with the cheap tier's samples below the last rung)."""
    if spec.fidelity is None:
        return 1.0, 1.0
    marks = rungs(spec.fidelity, checkpoints)
    survive = float(spec.fidelity.reduction_factor) ** -np.arange(len(marks))
    train = float((np.diff([0, *marks]) * survive).sum() / checkpoints)
    samples = np.where(np.arange(len(marks)) == len(marks) - 1, 1.0, spec.fidelity.sample_fraction)
    return train, float((survive * samples).sum())


def proxy_estimate(estimate: dict[str, Any], spec: ProxyAllocation | None, checkpoints: int = 1) -> dict[str, Any]:
    """`{"brute_force": {...}, "proxy": {...} | None}`; `checkpoints` = diffusion steps / storage.checkpoint_every
    (ASHA's rungs). The trial budget is spent in whole tokenizers (all of a tokenizer's diffusion trials), as the
    allocator spends it. GPU-hours of the non-diffusion stages are the same in both. Under a backbone ladder the
    brute force is the study without it (the target backbone(s) on every tokenizer); the proxy pays the cheap tier
    on every tokenizer (`ladder`: its runs and hours, the tokenizers promoted) and the target runs of the budget."""
    stages = estimate["stages"]
    cheap = (spec.ladder or {}).get("backbone") if spec is not None else None
    cheap_hours = {s: stages[s].get("by_group", {}).get(cheap, 0.0) if cheap else 0.0 for s in DIFFUSION_STAGES}
    target = {s: stages[s]["gpu_hours"] - cheap_hours[s] for s in DIFFUSION_STAGES}
    diffusion, ladder_hours = sum(target.values()), sum(cheap_hours.values())
    other = estimate["gpu_hours"] - diffusion - ladder_hours
    cheap_trials = int(estimate["counts"].get("diffusion_trials_by_backbone", {}).get(cheap, 0)) if cheap else 0
    total_trials = int(estimate["counts"]["diffusion_trials"]) - cheap_trials
    brute = {"gpu_hours": other + diffusion, "diffusion_gpu_hours": diffusion, "diffusion_trials": total_trials}
    if spec is None:
        return {"brute_force": brute, "proxy": None}
    per_tokenizer = total_trials // max(1, int(estimate["counts"].get("tokenizers", 1)))
    trials = spec.budget.max_trials(total_trials) // max(1, per_tokenizer) * per_tokenizer  # whole tokenizers
    share = trials / total_trials if total_trials else 0.0
    train_f, sample_f = fidelity_fractions(spec, checkpoints)
    hours = share * (target["diffusion_training"] * train_f
                     + (target["sampling"] + target["sample_scoring"]) * sample_f)
    if spec.budget.gpu_hours is not None:
        hours = min(hours, spec.budget.gpu_hours)
    spent = ladder_hours + hours
    ladder = None if cheap is None else {
        "backbone": cheap, "cheap_trials": cheap_trials, "cheap_gpu_hours": ladder_hours,
        "promoted_tokenizers": trials // max(1, per_tokenizer), "target_trials": trials, "target_gpu_hours": hours}
    return {"brute_force": brute,
            "proxy": {"gpu_hours": other + spent, "diffusion_gpu_hours": spent,
                      "diffusion_trials": trials + cheap_trials,
                      "fraction_of_brute_force_diffusion": spent / diffusion if diffusion else 0.0,
                      "fidelity": {"training_fraction": train_f, "sampling_fraction": sample_f}, "ladder": ladder,
                      "bound": "upper: allocation stops earlier once the answer settles"}}
