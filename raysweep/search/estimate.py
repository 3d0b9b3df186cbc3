"""`raysweep plan --json` for a proxy-guided study: its GPU-hours beside brute force, from the brute-force estimate
(`estimate/gpu_hours.py estimate_gpu_hours`) and the allocation spec. An upper bound: the allocation stops earlier
when the answer settles, which no plan can know in advance."""
from __future__ import annotations

from typing import Any

import numpy as np

from raysweep.config.allocation import ProxyAllocation
from raysweep.search.fidelity import rungs

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
    allocator spends it. GPU-hours of the non-diffusion stages are the same in both."""
    stages = estimate["stages"]
    diffusion = sum(stages[s]["gpu_hours"] for s in DIFFUSION_STAGES)
    other = estimate["gpu_hours"] - diffusion
    total_trials = int(estimate["counts"]["diffusion_trials"])
    brute = {"gpu_hours": estimate["gpu_hours"], "diffusion_gpu_hours": diffusion, "diffusion_trials": total_trials}
    if spec is None:
        return {"brute_force": brute, "proxy": None}
    per_tokenizer = total_trials // max(1, int(estimate["counts"].get("tokenizers", 1)))
    trials = spec.budget.max_trials(total_trials) // max(1, per_tokenizer) * per_tokenizer  # whole tokenizers
    share = trials / total_trials if total_trials else 0.0
    train_f, sample_f = fidelity_fractions(spec, checkpoints)
    hours = share * (stages["diffusion_training"]["gpu_hours"] * train_f
                     + (stages["sampling"]["gpu_hours"] + stages["sample_scoring"]["gpu_hours"]) * sample_f)
    if spec.budget.gpu_hours is not None:
        hours = min(hours, spec.budget.gpu_hours)
    return {"brute_force": brute,
            "proxy": {"gpu_hours": other + hours, "diffusion_gpu_hours": hours, "diffusion_trials": trials,
                      "fraction_of_brute_force_diffusion": hours / diffusion if diffusion else 0.0,
                      "fidelity": {"training_fraction": train_f, "sampling_fraction": sample_f},
                      "bound": "upper: allocation stops earlier once the answer settles"}}
