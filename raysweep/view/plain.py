"""The line-based view for logs and pipes (stdout not a TTY): one line per job state change, never one per step,
and a progress line with the study's ETA at most every `summary_every` seconds of event time and at the end.

    [+0:00:05] started   vf/SiT-T/0 (diffusion, 2000 steps)
    [+0:03:02] finished  vf (tokenizer) recon/psnr=24.31 in 0:02:57
    [+0:04:00] FAILED    vf/SiT-T/1 (diffusion) after 0:01:00: CUDA out of memory
    [+0:05:00] progress  3/13 done (1 cached), 2 running, 1 failed, 7 queued; ETA 0:04:10
"""
from __future__ import annotations

import sys
from collections.abc import Callable

from raysweep.engine.events import JobEvent
from raysweep.view.state import JobRow, StudyState
from raysweep.view.table import fmt_duration, fmt_metric, fmt_overview


def _change_line(row: JobRow, now: float) -> str | None:
    """The words after the timestamp for a job that just changed status (None for `queued`: the counts say it)."""
    where = f"{row.job_id} ({row.stage}"
    metric = fmt_metric(row.metric, row.value)
    if row.status == "running":
        return f"started   {where}{f', {row.total} steps' if row.total is not None else ''})"
    if row.status == "finished":
        return f"finished  {where}) {metric + ' ' if metric else ''}in {fmt_duration(row.elapsed(now))}"
    if row.status == "cached":
        return f"cached    {where}) {metric}".rstrip()
    if row.status == "failed":
        return f"FAILED    {where}) after {fmt_duration(row.elapsed(now))}: {row.reason}"
    return None


class PlainView:
    """An EventSink that writes lines through `write` (default: print to stdout, flushed)."""

    def __init__(self, write: Callable[[str], None] | None = None, summary_every: float = 60.0) -> None:
        self.state = StudyState()
        self.write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self.summary_every = summary_every
        self.last_summary: float | None = None
        self.lines = 0
        self.summary_last = False  # the latest line is a progress line: `close` need not repeat it

    def _emit(self, now: float, words: str) -> None:
        start = self.state.first_time if self.state.first_time is not None else now
        self.write(f"[+{fmt_duration(now - start)}] {words}")
        self.lines += 1
        self.summary_last = words.startswith("progress")

    def __call__(self, event: JobEvent) -> None:
        before, row = self.state.apply(event)
        self.summary_last = False
        if before is None or before.status != row.status:
            words = _change_line(row, event.time)
            if words:
                self._emit(event.time, words)
        if self.last_summary is None:
            self.last_summary = event.time
        elif event.time - self.last_summary >= self.summary_every:
            self.summary(event.time)

    def summary(self, now: float) -> None:
        self._emit(now, f"progress  {fmt_overview(self.state.overview())}")
        self.last_summary = now

    def close(self) -> None:
        """The final progress line (counts and failures of the whole run)."""
        if self.state.last_time is not None and not self.summary_last:
            self.summary(self.state.last_time)

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
