"""What a researcher sees of a running study: a live table in a terminal, plain lines in logs, library logs in a
file. Both views are `EventSink`s of the engine's progress events (raysweep.engine.events).

    with open_view() as view:
        run_study(study, sink=view, verbose=False)
"""
from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console

from raysweep.view.live import LiveView
from raysweep.view.logs import route_logs
from raysweep.view.plain import PlainView
from raysweep.view.state import JobRow, Overview, StudyState
from raysweep.view.table import fmt_duration, fmt_overview, jobs_table


def open_view(stream: TextIO | None = None, title: str | None = None) -> LiveView | PlainView:
    """The live view when `stream` (default stdout) is a terminal, else the plain line view writing to it."""
    out = stream or sys.stdout
    if out.isatty():
        return LiveView(Console(file=out), title=title)
    return PlainView(lambda line: print(line, file=out, flush=True))


__all__ = ["JobRow", "LiveView", "Overview", "PlainView", "StudyState", "fmt_duration", "fmt_overview",
           "jobs_table", "open_view", "route_logs"]
