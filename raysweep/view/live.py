"""The live terminal view: one screen (the jobs table and the overall line) redrawn in place by rich's `Live`.

Events only update the state under a lock; rich's refresh thread redraws a few times a second, so a burst of step
events costs nothing on screen and elapsed times and ETAs keep moving between events.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live

from raysweep.engine.events import JobEvent
from raysweep.view.state import StudyState
from raysweep.view.table import jobs_table

CHROME_LINES = 5  # header, rule, "more jobs" line, overview line, a spare: what the table leaves of the screen


class LiveView:
    """An EventSink drawing the study in place; use as a context manager (or `start`/`close`)."""

    def __init__(self, console: Console | None = None, clock: Callable[[], float] = time.time,
                 refresh_per_second: float = 2.0, title: str | None = None) -> None:
        self.state = StudyState()
        self.console = console or Console()
        self.clock = clock
        self.title = title
        self.lock = threading.Lock()
        self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=refresh_per_second,
                         transient=False)

    def render(self) -> Group:
        """The current screen; `now` never runs behind the latest event (replays, clocks of other hosts)."""
        with self.lock:
            now = max(self.clock(), self.state.last_time or 0.0)
            return jobs_table(self.state, now, max(self.console.height - CHROME_LINES, 1), self.title)

    def __call__(self, event: JobEvent) -> None:
        with self.lock:
            self.state.apply(event)

    def start(self) -> None:
        self.live.start()

    def close(self) -> None:
        """Stop refreshing; the last frame stays on screen."""
        self.live.stop()

    def __enter__(self) -> LiveView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
