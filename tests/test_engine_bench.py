"""`benchmarks/engine_bench.py`'s virtual clock and its smaller workload: a schedule's makespan against closed forms
on a hand-sized plan (one slot: the sum of the slot work; two: the critical path), `--tokenizers N` keeping exactly
the first N tokenizers' jobs, and the diagnosis naming the longest backbone."""
from __future__ import annotations

import sys
from pathlib import Path

from test_e2e_study import micro_study

from raysweep.config import parse_study
from raysweep.config.plan import DiffusionJob, StudyPlan, TokenizerJob

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from engine_bench import first_tokenizers, longest_backbone, lower_bound, virtual_schedule  # noqa: E402


def _plan(tmp_path: Path, tokenizers: int) -> StudyPlan:
    data = micro_study(tmp_path)
    data["tokenizers"]["variants"] = [{"regularizer": "baseline", "kl_weight": 10.0 ** -i, "id": f"t{i}"}
                                      for i in range(tokenizers)]
    data["diffusion"] = {"variants": [{"backbone": "SiT-B"}, {"backbone": "LightningDiT-XL"}], "seeds": [0]}
    return StudyPlan.from_spec(parse_study(data), analyze=False)


def test_first_tokenizers_keeps_exactly_their_jobs(tmp_path: Path) -> None:
    plan = _plan(tmp_path, tokenizers=3)
    small = first_tokenizers(plan, 2)
    kept = {j.ref for j in small}
    assert [j.id for j in small.tokenizers] == ["t0", "t1"]
    assert kept == {j.ref for j in plan if j.id.split("/")[0] in ("t0", "t1")}
    assert all(d in kept for j in small for d in j.deps) and first_tokenizers(plan, None) is plan


def test_virtual_makespan_is_the_slot_work_on_one_slot_and_the_critical_path_on_enough(tmp_path: Path) -> None:
    plan = _plan(tmp_path, tokenizers=1)
    hours = {j.ref: 3.0 if isinstance(j, TokenizerJob) else 0.0 for j in plan}
    hours.update({j.ref: 5.0 if j.backbone == "LightningDiT-XL" else 2.0 for j in plan.of(DiffusionJob)})
    estimate = dict(hours)
    for slots, expected in ((1, 3.0 + 5.0 + 2.0), (2, 3.0 + 5.0)):
        clock = virtual_schedule(plan, hours, slots, lambda j: estimate[j.ref])
        assert clock.now == expected == lower_bound(plan, hours, slots)
        xl, sit = (next(j.ref for j in plan.diffusion if j.backbone == b) for b in ("LightningDiT-XL", "SiT-B"))
        assert clock.started[xl] == 3.0 and clock.started[sit] == (5.0 + 3.0 if slots == 1 else 3.0)
    assert longest_backbone(plan, estimate) == "LightningDiT-XL"
