"""The jobs table and the overall line, as rich renderables: shared by the live view and `raysweep status`."""
from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from raysweep.view.state import DONE, JobRow, Overview, StudyState

STATUS_STYLE = {"queued": "dim", "running": "cyan", "finished": "green", "cached": "green dim", "failed": "bold red"}
PRIORITY = {"running": 0, "failed": 1, "queued": 2, "finished": 3, "cached": 3}  # kept first when rows must go


def fmt_duration(seconds: float | None) -> str:
    """h:mm:ss (a dash when unknown): one fixed format, so plain log lines are stable to grep and test."""
    if seconds is None:
        return "-"
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fmt_metric(metric: str | None, value: float | None) -> str:
    if metric is None or value is None:
        return ""
    return f"{metric}={value:.4g}"


def fmt_progress(row: JobRow) -> str:
    if row.total is None:
        return str(row.step) if row.step else ""
    return f"{row.step}/{row.total}"


def fmt_overview(o: Overview) -> str:
    """One line: jobs done of total by status, and the study's ETA (a lower bound marked >= when some jobs
    cannot be priced yet)."""
    eta = fmt_duration(o.eta) if o.eta is not None else "unknown"
    bound = ">=" if o.unpriced and o.eta is not None else ""
    return (f"{o.done}/{o.total} done ({o.cached} cached), {o.running} running, {o.failed} failed, "
            f"{o.queued} queued; ETA {bound}{eta}")


def shown_rows(rows: Sequence[JobRow], max_rows: int | None) -> tuple[list[JobRow], int]:
    """The rows that fit, running and failed first, then in study order; and how many were left out."""
    if max_rows is None or len(rows) <= max_rows:
        return list(rows), 0
    keep = set(sorted(range(len(rows)), key=lambda i: (PRIORITY[rows[i].status], i))[:max(max_rows, 0)])
    return [r for i, r in enumerate(rows) if i in keep], len(rows) - len(keep)


def jobs_table(state: StudyState, now: float, max_rows: int | None = None, title: str | None = None) -> Group:
    """The table of jobs (at most `max_rows`, with a line saying how many more) above the overview line."""
    rows, hidden = shown_rows(list(state.rows.values()), max_rows)
    table = Table(title=title, expand=False, pad_edge=False, show_edge=False)
    for name, justify in (("job", "left"), ("stage", "left"), ("status", "left"), ("step", "right"),
                          ("metric", "left"), ("elapsed", "right"), ("ETA", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        eta = state.remaining(r) if r.status not in DONE else None
        table.add_row(r.job_id, r.stage, Text(r.status, style=STATUS_STYLE[r.status]), fmt_progress(r),
                      fmt_metric(r.metric, r.value) if r.status != "failed" else Text(r.reason[:60], style="red"),
                      fmt_duration(r.elapsed(now)), fmt_duration(eta) if eta is not None else "")
    parts: list[Table | Text] = [table]
    if hidden:
        parts.append(Text(f"... {hidden} more jobs not shown", style="dim"))
    parts.append(Text(fmt_overview(state.overview()), style="bold"))
    return Group(*parts)
