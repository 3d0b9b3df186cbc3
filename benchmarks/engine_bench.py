"""Makespan of a simulated Table-1-shaped study: the DAG engine against today's stage barriers, on a local Ray.

The jobs are the plan of experiments/paper/table1.yaml (86 tokenizers, 86 latent-metric jobs, 344 diffusion runs);
their durations are the `raysweep plan --json` estimate (GPU-hours per tokenizer, per backbone; CPU-hours of the
latent metrics), scaled so that the 8-slot run lasts about `--seconds`. Each job is a Ray task that sleeps: trials
hold one slot of a custom GPU-like resource, latent-metric jobs one CPU. The same scheduler runs both schedules;
"barrier" is the same plan with today's stage barriers added (every job waits for every job of the stage before),
its metric jobs running in parallel (today they run one after another: the baseline is flattered).
Trials run as Ray tasks here, not Tune trials; the Tune start per trial job is measured separately and reported
beside it. The same two schedules are also run on a virtual clock (`VirtualClock`: the policy without any runtime
overhead), which is what the ratios converge to when jobs last hours rather than seconds.

    PYTHONPATH=. python benchmarks/engine_bench.py [--seconds 30] [--virtual-only] [--out benchmarks/RESULTS-engine.md]
"""
from __future__ import annotations

import argparse
import dataclasses
import heapq
import tempfile
import time
from pathlib import Path

from raysweep.config import load_study
from raysweep.config.plan import DiffusionJob, Job, JobRef, LatentMetricJob, StudyPlan, TokenizerJob
from raysweep.pipeline.estimate import estimate_gpu_hours
from raysweep.pipeline.executors import Outcome, RayExecutor, Task
from raysweep.pipeline.scheduler import Scheduler, remaining_path
from raysweep.pipeline.simulation import simulated_task
from raysweep.pipeline.store import Store

ROOT = Path(__file__).resolve().parents[1]
SLOT = "sim_gpu"
CPUS = 4  # Ray's CPUs: latent-metric jobs hold one each
STAGE_ORDER = ("tokenizer", "latent_metrics", "model_metrics", "diffusion", "diffusion_metrics")


def durations(plan: StudyPlan, estimate: dict) -> dict[JobRef, float]:
    """Hours per job from the estimate: a tokenizer's training + its share of its family's evaluation; a diffusion
    run its backbone's training, sampling and scoring over the runs of that backbone; latent metrics CPU-hours."""
    stages, tokenizers = estimate["stages"], {t["id"]: t for t in estimate["tokenizers"]}
    family_count: dict[str, int] = {}
    for t in tokenizers.values():
        family_count[t["family"]] = family_count.get(t["family"], 0) + 1
    runs_per_backbone: dict[str, int] = {}
    for run in plan.diffusion:
        runs_per_backbone[run.backbone] = runs_per_backbone.get(run.backbone, 0) + 1
    out: dict[JobRef, float] = {}
    for job in plan:
        if isinstance(job, TokenizerJob):
            t = tokenizers[job.id]
            out[job.ref] = t["gpu_hours"] + stages["tokenizer_evaluation"]["by_group"][t["family"]] / family_count[
                t["family"]]
        elif isinstance(job, DiffusionJob):
            out[job.ref] = sum(stages[s]["by_group"][job.backbone] for s in
                               ("diffusion_training", "sampling", "sample_scoring")) / runs_per_backbone[job.backbone]
        else:
            out[job.ref] = stages["latent_metrics"]["cpu_hours"] / len(plan.tokenizers)
    return out


def with_barriers(plan: StudyPlan) -> StudyPlan:
    """Today's schedule: each job also waits for every job of the stage before it."""
    by_stage: dict[str, list[Job]] = {s: [j for j in plan if j.stage == s] for s in STAGE_ORDER}
    jobs: list[Job] = []
    before: tuple[JobRef, ...] = ()
    for stage in STAGE_ORDER:
        jobs += [dataclasses.replace(j, deps=tuple(dict.fromkeys(j.deps + before))) for j in by_stage[stage]]
        before = tuple(j.ref for j in by_stage[stage]) or before
    return StudyPlan(tuple(jobs))


def lower_bound(plan: StudyPlan, hours: dict[JobRef, float], slots: int) -> float:
    """max(critical path, slot work / slots), in hours."""
    path = max(remaining_path(plan, lambda j: hours[j.ref]).values())
    work = sum(h for ref, h in hours.items() if ref[0] in ("tokenizer", "diffusion"))
    return max(path, work / slots)


def run(plan: StudyPlan, hours: dict[JobRef, float], scale: float, root: Path) -> float:
    """Wall seconds of the scheduler on `plan` with sleeping jobs (`scale` s per hour)."""
    store, jobs = Store(root), plan.by_ref()

    def task(job: Job):
        need = {"CPU": 1.0} if isinstance(job, LatentMetricJob) else {SLOT: 1.0}
        return simulated_task(job, store, jobs, hours[job.ref] * scale, need, tune=False)

    executor = RayExecutor(str(root / "tune"), lambda e: None)
    start = time.perf_counter()
    try:
        result = Scheduler(plan, store, executor, task, cost=lambda j: hours[j.ref]).run()
    finally:
        executor.close()
    assert not result.failed, list(result.failed.items())[:3]
    return time.perf_counter() - start


class VirtualClock:
    """An executor on a virtual clock (no Ray, nothing sleeps): a task holds its resources for its duration and
    `wait` jumps to the next finish, so the scheduler's policy is measured without any runtime overhead."""

    def __init__(self, capacity: dict[str, float], hours: dict[JobRef, float]) -> None:
        self._capacity, self.hours, self.now = capacity, hours, 0.0
        self.running: list[tuple[float, int, JobRef]] = []

    def capacity(self) -> dict[str, float]:
        return dict(self._capacity)

    def submit(self, task: Task) -> None:
        heapq.heappush(self.running, (self.now + self.hours[task.ref], len(self.running) + id(task), task.ref))

    def wait(self, timeout: float) -> list[Outcome]:
        if not self.running:
            return []
        end, _, ref = heapq.heappop(self.running)
        self.now, done = end, [Outcome(ref)]
        while self.running and self.running[0][0] <= end:
            done.append(Outcome(heapq.heappop(self.running)[2]))
        return done

    def close(self) -> None:
        pass


def virtual_makespan(plan: StudyPlan, hours: dict[JobRef, float], slots: int) -> float:
    """Hours the scheduler's schedule takes on the virtual clock."""
    clock = VirtualClock({"CPU": float(CPUS), SLOT: float(slots)}, hours)

    def task(job: Job) -> Task:
        return Task(job.ref, "task", _noop, resources={"CPU": 1.0} if isinstance(job, LatentMetricJob) else {SLOT: 1.0})

    with tempfile.TemporaryDirectory() as tmp:
        result = Scheduler(plan, Store(Path(tmp)), clock, task, cost=lambda j: hours[j.ref]).run()
    assert not result.failed
    return clock.now


def warm_up(slots: int, cpus: int) -> None:
    """Start the Ray workers both schedules will use, so neither pays the process starts of the other."""
    import ray

    sleep = ray.remote(_sleep)
    ray.get([sleep.options(num_cpus=0, resources={SLOT: 1}).remote(0.5) for _ in range(slots)]
            + [sleep.options(num_cpus=1).remote(0.5) for _ in range(cpus)])


def tune_overhead(root: Path, n: int = 3) -> float:
    """Median wall seconds of a one-trial Tune experiment whose trial does nothing (a trial job's fixed cost)."""
    from raysweep.pipeline.tune_stage import run_trial

    times = []
    for i in range(n):
        start = time.perf_counter()
        run_trial(f"noop-{i}", _noop, {}, str(root), {"CPU": 1.0}, trial_name=f"noop/{i}")
        times.append(time.perf_counter() - start)
    return sorted(times)[n // 2]


def _noop(config: dict) -> None:
    pass


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0, help="target wall of the 8-slot lower bound")
    parser.add_argument("--slots", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--virtual-slots", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--virtual-only", action="store_true", help="skip the runs on Ray")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS-engine.md")
    args = parser.parse_args()
    study = load_study(ROOT / "experiments" / "paper" / "table1.yaml")
    plan = StudyPlan.from_spec(study, analyze=False)
    hours = durations(plan, estimate_gpu_hours(study))
    scale = args.seconds / lower_bound(plan, hours, min(args.slots))
    barriers = with_barriers(plan)
    virtual = [(n, virtual_makespan(plan, hours, n) / lower_bound(plan, hours, n),
                virtual_makespan(barriers, hours, n) / lower_bound(plan, hours, n)) for n in args.virtual_slots]
    lines = [f"# Engine benchmark: simulated Table 1 ({len(plan.tokenizers)} tokenizers, {len(plan.diffusion)} "
             f"diffusion runs, {len(plan.of(LatentMetricJob))} latent-metric jobs; durations from the plan estimate)",
             "", "The scheduler on a virtual clock (no Ray, no runtime overhead: the schedule alone):", "",
             "| slots | lower bound (GPU-h) | engine / lower bound | barrier / lower bound |", "|---|---|---|---|",
             *[f"| {n} | {lower_bound(plan, hours, n):.0f} | {e:.3f} | {b:.3f} |" for n, e, b in virtual], "",
             "Virtual clock: engine makespan / lower bound (max(critical path, work / slots)) = "
             + ", ".join(f"{e:.3f} at {n} slots" for n, e, _ in virtual) + "; today's barrier schedule / lower bound = "
             + ", ".join(f"{b:.3f} at {n} slots" for n, _, b in virtual) + "."]
    print("\n".join(lines), flush=True)
    if not args.virtual_only:
        lines += ["", f"On a local Ray, each job a task that sleeps ({scale:.3g} s per GPU-hour):", "",
                  "| slots | lower bound (s) | engine (s) | engine / lower bound | barrier (s) "
                  "| barrier / lower bound |",
                  "|---|---|---|---|---|---|"]
        overhead = 0.0
        for slots in args.slots:
            ray.init(address="local", num_cpus=CPUS, resources={SLOT: slots}, include_dashboard=False,
                     log_to_driver=False)
            try:
                warm_up(slots, CPUS)
                bound = lower_bound(plan, hours, slots) * scale
                with tempfile.TemporaryDirectory() as tmp:
                    engine = run(plan, hours, scale, Path(tmp) / "engine")
                    barrier = run(barriers, hours, scale, Path(tmp) / "barrier")
                    overhead = overhead or tune_overhead(Path(tmp) / "tune-noop")
            finally:
                ray.shutdown()
            lines.append(f"| {slots} | {bound:.1f} | {engine:.1f} | {engine / bound:.3f} | {barrier:.1f} | "
                         f"{barrier / bound:.3f} |")
            print(lines[-1], flush=True)
        lines += ["", f"Tune start per trial job (a one-trial experiment whose trial does nothing, median of 3): "
                  f"{overhead:.2f} s on this machine; not in the durations above."]
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
