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
table (it is the script's own file: never point it at hand-written text). `--tokenizers N` keeps the plan's first N
tokenizers and their jobs (a second workload); `--diagnose FILE` also writes, over the same draws, two partial
oracles (one knows only the longest backbone's actual durations, one every actual duration but those) and which job
ends production's schedule.

Why production misses exact at 64 slots (measured by `--diagnose`; the numbers are in RESULTS-engine.md): there are
more runs of the longest backbone (86 LightningDiT-XL runs of ~64 GPU-h) than slots, so 22 of them can start only
once another one has ended (~40-85 h in). Which of the 86 is actually longest (~2.6x its estimate in a typical
draw) no estimate tells: they are all 63.85-63.89 GPU-h. Production's schedule ends with such a late-started XL
run; an oracle knowing only the XL durations closes more than half of the gap, one knowing every duration but
those closes none, and the gap vanishes once the XL runs fit the slots (96, 128 slots; or 43 tokenizers on 48).
Re-ranking cannot pick the long run: any priority computed from the estimates and the noise model (a quantile of
the remaining path included) ranks the XL runs of a family alike, and the late ones are as likely as any to be the
long one; tie-breaks by ready time, shortest tokenizers first, or XL runs before the remaining tokenizers were
tried in a throwaway copy of this virtual clock and did no better. The goal P / E <= 1.03 at 64 slots needs
information the estimate does not hold; the scheduler's policy is unchanged.

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
from raysweep.config.plan import Job, JobRef, LatentMetricJob, StudyPlan, TokenizerJob
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


def first_tokenizers(plan: StudyPlan, n: int | None) -> StudyPlan:
    """The plan's first `n` tokenizers and the jobs that depend only on them (a smaller workload; None: all)."""
    if n is None:
        return plan
    kept = {j.ref for j in plan.tokenizers[:n]}
    for job in plan:  # topological order: a job's deps are decided before it
        if job.ref not in kept and not isinstance(job, TokenizerJob) and all(d in kept for d in job.deps):
            kept.add(job.ref)
    return StudyPlan(tuple(j for j in plan if j.ref in kept))


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
        self.started: dict[JobRef, float] = {}  # each job's start (the diagnosis reads which job ended last)

    def capacity(self) -> dict[str, float]:
        return dict(self._capacity)

    def submit(self, task: Task) -> None:
        self.started[task.ref] = self.now
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


def virtual_schedule(plan: StudyPlan, hours: dict[JobRef, float], slots: int,
                     cost: Callable[[Job], float]) -> VirtualClock:
    """The scheduler's schedule on the virtual clock, jobs lasting `hours`, ranked by `cost` (`now`: the makespan)."""
    clock = VirtualClock({"CPU": float(CPUS), SLOT: float(slots)}, hours)

    def task(job: Job) -> Task:
        return Task(job.ref, "task", _noop, resources={"CPU": 1.0} if isinstance(job, LatentMetricJob) else {SLOT: 1.0})

    with tempfile.TemporaryDirectory() as tmp:
        result = Scheduler(plan, Store(Path(tmp)), clock, task, cost=cost).run()
    assert not result.failed
    return clock


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
            out[column].append(virtual_schedule(jobs, actual, slots, cost).now / bound)
    return out


def longest_backbone(plan: StudyPlan, estimate: dict[JobRef, float]) -> str:
    """The diffusion backbone whose runs have the largest estimate (Table 1: LightningDiT-XL)."""
    return max(plan.diffusion, key=lambda j: estimate.get(j.ref, 0.0)).backbone


def diagnosis_row(plan: StudyPlan, estimate: dict[JobRef, float], slots: int, draws: int, seed: int = 0) -> str:
    """Where production loses to exact: two partial oracles on the same draws as `virtual_ratios` (one knows only
    the longest backbone's actual durations, one every actual duration but those), and which job ends production's
    schedule (how often a run of the longest backbone, and when it started: the window in which such runs start)."""
    backbone, rng = longest_backbone(plan, estimate), np.random.default_rng(seed)
    long = {j.ref for j in plan.diffusion if j.backbone == backbone}
    out: dict[str, list[float]] = {c: [] for c in ("production", "exact", "long only", "all but long")}
    last_long, last_start = 0, []
    for _ in range(draws):
        actual = noisy(estimate, rng)
        bound = lower_bound(plan, actual, slots)
        for column, cost in (("production", lambda j: estimate.get(j.ref, 0.0)),
                             ("exact", lambda j: actual.get(j.ref, 0.0)),
                             ("long only", lambda j: (actual if j.ref in long else estimate).get(j.ref, 0.0)),
                             ("all but long", lambda j: (estimate if j.ref in long else actual).get(j.ref, 0.0))):
            clock = virtual_schedule(plan, actual, slots, cost)
            out[column].append(clock.now / bound)
            if column == "production":
                last = max(clock.started, key=lambda r: clock.started[r] + actual.get(r, 0.0))
                last_long += last in long
                last_start.append(clock.started[last])
    med = {c: statistics.median(v) for c, v in out.items()}
    return (f"| {slots} | {len(long)} | {med['production']:.3f} | {med['exact']:.3f} | {med['long only']:.3f} "
            f"| {med['all but long']:.3f} | {last_long} of {draws} | {statistics.median(last_start):.0f} |")


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


def diagnosis_table(plan: StudyPlan, estimate: dict[JobRef, float], slots: list[int], draws: int) -> list[str]:
    """The markdown table `--diagnose` holds: per slot count, `diagnosis_row` (medians over the same draws)."""
    long = longest_backbone(plan, estimate)
    lines = [f"| slots | {long} runs | production / lower bound | exact / lower bound "
             f"| oracle of the {long} durations only | oracle of every duration but the {long} ones "
             f"| production ends with a {long} run | that run's start (h, median) |",
             "|---|---|---|---|---|---|---|---|"]
    for n in slots:
        lines.append(diagnosis_row(plan, estimate, n, draws))
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


def _shown(path: Path) -> str:
    """`path` as the command line in the caption gives it (relative to the repository when inside it)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


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
    parser.add_argument("--tokenizers", type=int, default=None,
                        help="only the plan's first N tokenizers and their jobs (a second, smaller workload)")
    parser.add_argument("--diagnose", type=Path, default=None,
                        help="also write the diagnosis table (partial oracles, which job ends production) to FILE")
    parser.add_argument("--seconds", type=float, default=200.0, help="Ray: target wall of the smallest lower bound")
    parser.add_argument("--slots", type=int, nargs="+", default=[8, 16], help="Ray: slot counts")
    args = parser.parse_args()
    study = load_study(ROOT / "experiments" / "paper" / "table1.yaml")
    full = StudyPlan.from_spec(study, analyze=False)
    plan = first_tokenizers(full, args.tokenizers)
    estimate = {ref: h for ref, h in job_hours(study, full).items() if ref in plan.by_ref()}
    command = ("PYTHONPATH=. python benchmarks/engine_bench.py --virtual-only --virtual-slots "
               + " ".join(map(str, args.virtual_slots)) + f" --draws {args.draws}"
               + (f" --tokenizers {args.tokenizers}" if args.tokenizers else "")
               + (f" --out {_shown(args.out)}" if args.out != parser.get_default("out") else "")
               + (f" --diagnose {_shown(args.diagnose)}" if args.diagnose else ""))
    caption = (f"Virtual clock, simulated Table 1 ({len(plan.tokenizers)} tokenizers, {len(plan.diffusion)} diffusion "
               f"runs, {len(plan.of(LatentMetricJob))} latent-metric jobs), actual = estimate x lognormal(sigma "
               f"{SIGMA}), median of {args.draws} draws; written by `{command}` "
               f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).")
    table = virtual_table(plan, estimate, args.virtual_slots, args.draws)
    args.out.write_text("\n".join([caption, "", *table, ""]))
    if args.diagnose:
        args.diagnose.write_text("\n".join([caption, "", *diagnosis_table(plan, estimate, args.virtual_slots,
                                                                          args.draws), ""]))
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
