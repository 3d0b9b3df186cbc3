"""The study view on a replayed event stream of the quickstart's shape: what a terminal and a CI log get.

    python benchmarks/view_bench.py                  # 13 jobs, 300 steps each, like experiments/quickstart.yaml
    python benchmarks/view_bench.py --jobs 200       # a bigger study: the live screen must stay one screen

Stream: a reference job (200 steps), then 6 tokenizers (300 steps, two at a time, as the quickstart's 2 CPUs run
them), then 6 diffusion trials (300 steps), every step reported; event times are synthetic (no sleeping).
Measured:
  * plain mode   the lines PlainView writes (one per state change plus a progress line per simulated minute);
  * live mode    the lines of one frame (the screen height it needs) and the bytes written by a real rich `Live`
                 redrawing in place at 4 frames per simulated second, on a 40-line terminal;
  * cost         seconds per event of each view against a no-op sink replaying the same stream in this process
                 (ratio, median of 5 alternated repeats): the view must not slow the engine's event loop.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable

from rich.console import Console

from raysweep.engine.events import JobEvent, JobFinished, JobQueued, JobStarted, JobStep
from raysweep.view import LiveView, PlainView

SECONDS_PER_STEP = {"reference": 0.2, "tokenizer": 0.9, "diffusion": 0.7}


def quickstart_stream(n_tokenizers: int = 6, steps: int = 300, slots: int = 2) -> list[JobEvent]:
    """Synthetic events in time order: reference, tokenizers `slots` at a time, then one diffusion per tokenizer."""
    names = ["baseline", "baseline-kl1e-3", "eq", "lcr", "vf", "mae"]
    toks = [names[i] if i < len(names) else f"tok{i}" for i in range(n_tokenizers)]
    jobs = [("reference", "reference", 200)] + [(t, "tokenizer", steps) for t in toks] + \
        [(f"{t}/SiT-T/0", "diffusion", steps) for t in toks]
    events: list[JobEvent] = [JobQueued(j, s, time=0.0, total=n) for j, s, n in jobs]
    free = [0.0] * slots
    for job, stage, total in jobs:
        slot = min(range(slots), key=free.__getitem__)
        t0 = free[slot]
        events.append(JobStarted(job, stage, time=t0, total=total))
        dt = SECONDS_PER_STEP[stage]
        events += [JobStep(job, stage, time=t0 + 2.0 + s * dt, step=s, total=total, metric="train/loss",
                           value=1.0 / s) for s in range(1, total + 1)]
        end = t0 + 2.0 + total * dt + 1.0
        events.append(JobFinished(job, stage, time=end, metric="recon/psnr" if stage == "tokenizer" else None,
                                  value=24.0 if stage == "tokenizer" else None))
        free[slot] = end
    return sorted(events, key=lambda e: e.time)


def replay(events: list[JobEvent], sink: Callable[[JobEvent], None]) -> float:
    t0 = time.perf_counter()
    for e in events:
        sink(e)
    return time.perf_counter() - t0


def live_frames(events: list[JobEvent], height: int, fps: float) -> tuple[int, int, int]:
    """(lines of the last frame, frames drawn, bytes written) for a real Live redrawn at `fps` per event second."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, height=height, color_system="standard")
    now = [0.0]
    view = LiveView(console, clock=lambda: now[0], refresh_per_second=1e-3)  # we draw the frames ourselves
    frames, next_frame = 0, 0.0
    with view:
        for e in events:
            view(e)
            now[0] = e.time
            if e.time >= next_frame:
                view.live.refresh()
                frames += 1
                next_frame = e.time + 1.0 / fps
    frame = Console(file=io.StringIO(), width=120, height=height)
    frame.print(view.render())
    return len(frame.file.getvalue().splitlines()), frames, len(out.getvalue().encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=6, help="tokenizers (each with one diffusion trial)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    events = quickstart_stream(args.jobs, args.steps)
    lines: list[str] = []
    plain = PlainView(lines.append)
    replay(events, plain)
    plain.close()
    height = 40
    frame_lines, frames, live_bytes = live_frames(events, height, fps=4.0)
    costs: dict[str, list[float]] = {"noop": [], "plain": [], "live": []}
    for _ in range(args.repeats):  # alternated, so load from other processes hits all alike
        costs["noop"].append(replay(events, lambda e: None))
        costs["plain"].append(replay(events, PlainView(lambda line: None)))
        costs["live"].append(replay(events, LiveView(Console(file=io.StringIO()), refresh_per_second=1e-3)))
    median = {k: statistics.median(v) for k, v in costs.items()}
    print(json.dumps({
        "jobs": len({e.job_id for e in events}), "events": len(events),
        "plain_lines": len(lines), "live_frame_lines": frame_lines, "terminal_height": height,
        "live_frames": frames, "live_bytes": live_bytes,
        "us_per_event": {k: 1e6 * v / len(events) for k, v in median.items()},
        "overhead_vs_noop_us_per_event": {k: 1e6 * (median[k] - median["noop"]) / len(events)
                                          for k in ("plain", "live")},
        "first_lines": lines[:6], "last_line": lines[-1],
    }, indent=2))


if __name__ == "__main__":
    main()
