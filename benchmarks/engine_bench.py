"""Makespan of a simulated Table-1-shaped study: the DAG engine's schedule against baselines.

The jobs are the plan of experiments/paper/table1.yaml (86 tokenizers, 86 latent-metric jobs, 344 diffusion runs).
Each job's estimate is `estimate/gpu_hours.py` job_hours, the cost production schedules by (`run_study`): GPU-hours
of a tokenizer and of each diffusion run (which differ by tokenizer: latent width, decoder), CPU-hours of the latent
metrics. Trials hold one slot of a GPU-like resource, latent-metric jobs one of `CPUS` CPUs.

Virtual clock (`VirtualClock`: the policy alone, no runtime overhead), the regime that tells schedules apart (many
slots: at 8 or 16 slots any non-idling schedule is within Graham's bound of the lower bound). Each draw gives every
job an actual duration = estimate x exp(N(0, sigma^2)) (sigma 0.4: estimates are off by ~1.5x either way) and runs:
  production   the scheduler ranking by the estimate (what `run_study` does), the jobs lasting their actual time;
  exact        the scheduler ranking by the actual durations (an oracle);
  plan order   no priority (every cost 0: ready jobs start in plan order);
  barrier      today's stage barriers added to the plan (every job waits for the stage before), ranked by estimate.
Each cell is makespan / lower bound of the same draw, lower bound = max(critical path, slot work / slots) of that
draw's actual durations; the median over draws, the spread (min-max) in its own column. `--out` gets that one
table (it is the script's own file: never point it at hand-written text).

Without `--virtual-only` it also runs the production and barrier schedules on a local Ray, each job a task that
sleeps its estimate (scaled so the smallest slot count's lower bound lasts `--seconds`), and prints that table
(Ray's per-task latency is in it; RESULTS-engine.md quotes it with its command).

    PYTHONPATH=. python benchmarks/engine_bench.py --virtual-only [--virtual-slots 64 96 128] [--draws 9] \
        [--out benchmarks/RESULTS-engine-virtual.md]
    PYTHONPATH=. python benchmarks/engine_bench.py --slots 8 16 --seconds 200     # also on a local Ray
"""
from __future__ import annotations

import argparse
import dataclasses
import heapq
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from raysweep.config import load_study
from raysweep.config.plan import Job, JobRef, LatentMetricJob, StudyPlan
from raysweep.engine.executors import Outcome, RayExecutor, Task
from raysweep.engine.scheduler import Scheduler, remaining_path
from raysweep.engine.store import Store
from raysweep.estimate.gpu_hours import job_hours
from raysweep.estimate.simulation import simulated_task

ROOT = Path(__file__).resolve().parents[1]
SLOT = "sim_gpu"
CPUS = 4  # Ray's CPUs: latent-metric jobs hold one each
SIGMA = 0.4  # log-normal error of the estimate
COLUMNS = ("production", "exact", "plan order", "barrier")
STAGE_ORDER = ("tokenizer", "latent_metrics", "model_metrics", "diffusion", "diffusion_metrics")


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
    path = max(remaining_path(plan, lambda j: hours.get(j.ref, 0.0)).values())
    work = sum(h for ref, h in hours.items() if ref[0] in ("tokenizer", "diffusion"))
    return max(path, work / slots)


def run(plan: StudyPlan, hours: dict[JobRef, float], scale: float, root: Path) -> float:
    """Wall seconds of the scheduler on `plan` with sleeping jobs (`scale` s per hour)."""
    store, jobs = Store(root), plan.by_ref()

    def task(job: Job):
        need = {"CPU": 1.0} if isinstance(job, LatentMetricJob) else {SLOT: 1.0}
        return simulated_task(job, store, jobs, hours.get(job.ref, 0.0) * scale, need, tune=False)

    executor = RayExecutor(str(root / "tune"), lambda e: None)
    start = time.perf_counter()
    try:
        result = Scheduler(plan, store, executor, task, cost=lambda j: hours.get(j.ref, 0.0)).run()
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
        heapq.heappush(self.running, (self.now + self.hours.get(task.ref, 0.0), len(self.running) + id(task), task.ref))

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


def virtual_makespan(plan: StudyPlan, hours: dict[JobRef, float], slots: int,
                     cost: Callable[[Job], float]) -> float:
    """Hours the scheduler's schedule takes on the virtual clock, jobs lasting `hours`, ranked by `cost`."""
    clock = VirtualClock({"CPU": float(CPUS), SLOT: float(slots)}, hours)

    def task(job: Job) -> Task:
        return Task(job.ref, "task", _noop, resources={"CPU": 1.0} if isinstance(job, LatentMetricJob) else {SLOT: 1.0})

    with tempfile.TemporaryDirectory() as tmp:
        result = Scheduler(plan, Store(Path(tmp)), clock, task, cost=cost).run()
    assert not result.failed
    return clock.now


def noisy(estimate: dict[JobRef, float], rng: np.random.Generator) -> dict[JobRef, float]:
    """One draw of actual durations: each estimate times exp(N(0, SIGMA^2))."""
    return {ref: h * float(np.exp(rng.normal(0.0, SIGMA))) for ref, h in estimate.items()}


def virtual_ratios(plan: StudyPlan, estimate: dict[JobRef, float], slots: int, draws: int,
                   seed: int = 0) -> dict[str, list[float]]:
    """Per column, makespan / lower bound of each draw (the same draws for every column)."""
    barriers, rng = with_barriers(plan), np.random.default_rng(seed)
    out: dict[str, list[float]] = {c: [] for c in COLUMNS}
    for _ in range(draws):
        actual = noisy(estimate, rng)
        bound = lower_bound(plan, actual, slots)
        for column, jobs, cost in (("production", plan, lambda j: estimate.get(j.ref, 0.0)),
                                   ("exact", plan, lambda j: actual.get(j.ref, 0.0)),
                                   ("plan order", plan, lambda j: 0.0),
                                   ("barrier", barriers, lambda j: estimate.get(j.ref, 0.0))):
            out[column].append(virtual_makespan(jobs, actual, slots, cost) / bound)
    return out


def virtual_table(plan: StudyPlan, estimate: dict[JobRef, float], slots: list[int], draws: int) -> list[str]:
    """The markdown table `--out` holds: per slot count, the median ratio per column and its spread."""
    lines = ["| slots | production / lower bound | exact / lower bound | plan order / lower bound "
             "| barrier / lower bound | P / E (goal <= 1.03) | spread min-max (P; E; plan order; barrier) |",
             "|---|---|---|---|---|---|---|"]
    for n in slots:
        r = virtual_ratios(plan, estimate, n, draws)
        med = {c: statistics.median(v) for c, v in r.items()}
        spread = "; ".join(f"{min(v):.3f}-{max(v):.3f}" for v in r.values())
        lines.append(f"| {n} | {med['production']:.3f} | {med['exact']:.3f} | {med['plan order']:.3f} "
                     f"| {med['barrier']:.3f} | {med['production'] / med['exact']:.3f} | {spread} |")
        print(lines[-1], flush=True)
    return lines


def warm_up(slots: int, cpus: int) -> None:
    """Start the Ray workers both schedules will use, so neither pays the process starts of the other."""
    import ray

    sleep = ray.remote(_sleep)
    ray.get([sleep.options(num_cpus=0, resources={SLOT: 1}).remote(0.5) for _ in range(slots)]
            + [sleep.options(num_cpus=1).remote(0.5) for _ in range(cpus)])


def tune_overhead(root: Path, n: int = 3) -> float:
    """Median wall seconds of a one-trial Tune experiment whose trial does nothing (a trial job's fixed cost)."""
    from raysweep.engine.tune import run_trial

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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--virtual-slots", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--draws", type=int, default=9, help="noisy duration draws per slot count")
    parser.add_argument("--virtual-only", action="store_true", help="skip the runs on Ray")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS-engine-virtual.md",
                        help="the virtual-clock table (the script's own file)")
    parser.add_argument("--seconds", type=float, default=200.0, help="Ray: target wall of the smallest lower bound")
    parser.add_argument("--slots", type=int, nargs="+", default=[8, 16], help="Ray: slot counts")
    args = parser.parse_args()
    study = load_study(ROOT / "experiments" / "paper" / "table1.yaml")
    plan = StudyPlan.from_spec(study, analyze=False)
    estimate = job_hours(study, plan)
    command = ("PYTHONPATH=. python benchmarks/engine_bench.py --virtual-only --virtual-slots "
               + " ".join(map(str, args.virtual_slots)) + f" --draws {args.draws}")
    table = virtual_table(plan, estimate, args.virtual_slots, args.draws)
    args.out.write_text("\n".join([
        f"Virtual clock, simulated Table 1 ({len(plan.tokenizers)} tokenizers, {len(plan.diffusion)} diffusion runs, "
        f"{len(plan.of(LatentMetricJob))} latent-metric jobs), actual = estimate x lognormal(sigma {SIGMA}), median "
        f"of {args.draws} draws; written by `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "", *table, ""]))
    if not args.virtual_only:
        ray_table(plan, estimate, args.slots, args.seconds)


def ray_table(plan: StudyPlan, hours: dict[JobRef, float], slots: list[int], seconds: float) -> None:
    """The production and barrier schedules on a local Ray, jobs sleeping their estimate; printed."""
    import ray

    scale = seconds / lower_bound(plan, hours, min(slots))
    barriers = with_barriers(plan)
    print(f"On a local Ray, each job a task that sleeps ({scale:.3g} s per GPU-hour):\n\n"
          "| slots | lower bound (s) | engine (s) | engine / lower bound | barrier (s) | barrier / lower bound |\n"
          "|---|---|---|---|---|---|", flush=True)
    overhead = 0.0
    for n in slots:
        ray.init(address="local", num_cpus=CPUS, resources={SLOT: n}, include_dashboard=False, log_to_driver=False)
        try:
            warm_up(n, CPUS)
            bound = lower_bound(plan, hours, n) * scale
            with tempfile.TemporaryDirectory() as tmp:
                engine = run(plan, hours, scale, Path(tmp) / "engine")
                barrier = run(barriers, hours, scale, Path(tmp) / "barrier")
                overhead = overhead or tune_overhead(Path(tmp) / "tune-noop")
        finally:
            ray.shutdown()
        print(f"| {n} | {bound:.1f} | {engine:.1f} | {engine / bound:.3f} | {barrier:.1f} | {barrier / bound:.3f} |",
              flush=True)
    print(f"\nTune start per trial job (a one-trial experiment whose trial does nothing, median of 3): "
          f"{overhead:.2f} s on this machine; not in the durations above.")


if __name__ == "__main__":
    main()
