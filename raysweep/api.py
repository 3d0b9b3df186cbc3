"""raysweep from Python (a notebook): the CLI's verbs on typed values, with the same code paths.

    import raysweep
    study = raysweep.load("experiments/quickstart.yaml")     # StudySpec (validated, like `raysweep validate`)
    raysweep.plan(study)                                      # StudyPlan: every job with its content key
    raysweep.run(study)                                       # runs or resumes it (progress as in the terminal)
    raysweep.status(study)                                    # what is done, running, stale
    df = raysweep.table(study)                                # the tidy table: a row per run and CFG scale
    raysweep.analyze_table(df, id="tokenizer_id", target="gen/gfid", out_dir="out")   # = `analyze --table`

`import raysweep` stays light: these functions import Ray, MLflow and torch when called, never at import.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from raysweep.analysis.study import AnalysisOptions, StudyAnalysis
    from raysweep.config.plan import StudyPlan
    from raysweep.config.spec import StudySpec
    from raysweep.engine.executors import Executor
    from raysweep.runner import StudyResult


def load(path: str | Path) -> StudySpec:
    """The study file, validated (bad input raises `ConfigError` naming the file, key and allowed values)."""
    from raysweep.config import load_study

    return load_study(path)


def plan(study: StudySpec) -> StudyPlan:
    """Every job of the study with its content key (a finished tokenizer search's outcome read from its store)."""
    from raysweep.engine.study_plan import plan_study

    return plan_study(study)


def run(study: StudySpec, executor: Executor | None = None, quiet: bool = False, analyze: bool = True,
        verbose: bool = False, on_logs: Callable[[Path], None] | None = None) -> StudyResult:
    """Run or resume the study, holding its lock; progress as `raysweep run` shows it (`quiet`: none). Library logs
    go to `<root>/logs/raysweep.log` (`verbose`: here too; `on_logs(path)` once it is open). `executor`: another
    than Ray's (e.g. in-process). `raysweep run` is this function."""
    from raysweep.config.preflight import preflight
    from raysweep.engine.lock import study_lock
    from raysweep.runner import run_study
    from raysweep.view import open_view, route_logs

    preflight(study)  # first: a study that cannot run leaves no lock file behind (and the lock needs the root)
    with study_lock(study.root, hint=f"raysweep status {study.source}"), route_logs(study.root, verbose) as log:
        if on_logs is not None:
            on_logs(log)
        if quiet:
            return run_study(study, analyze=analyze, verbose=verbose, executor=executor)
        with open_view(title=f"study {study.name}") as view:
            return run_study(study, analyze=analyze, sink=view, verbose=verbose, executor=executor)


def status(study: StudySpec) -> dict[str, Any]:
    """What `raysweep status --json` prints: per tokenizer and job, done / running / stale (with the field that
    changed)."""
    from raysweep.engine.status import study_status

    return study_status(study)


def table(study: StudySpec) -> pd.DataFrame:
    """The study's tidy table from its tracking store: a row per tokenizer x backbone x seed x CFG scale, failed
    and incomplete runs included with `status` and `reason`, runs of inputs the study no longer has left out (what
    the analysis reads)."""
    from raysweep.analysis.loading import load_tracked_table
    from raysweep.engine.study_plan import plan_study

    return load_tracked_table(study.tracking_uri, study.experiment_name, plan_study(study).keys)


def analyze_table(frame: pd.DataFrame, id: str, target: str, out_dir: str | Path, metrics: Sequence[str] = (),
                  lower_is_better: Sequence[str] = (), group: str | None = None,
                  options: AnalysisOptions | None = None, name: str = "table") -> StudyAnalysis:
    """`raysweep analyze --table` on a DataFrame: the study analysis (ranking with tokenizer-level CIs, joint
    regressions, figures, report) of any results table, written to `out_dir`. Rows sharing `id` are seeds."""
    from raysweep.analysis.external import TableColumns, analyze_frame

    columns = TableColumns(id=id, target=target, metrics=tuple(metrics), lower_is_better=tuple(lower_is_better),
                           group=group)
    return analyze_frame(frame, columns, out_dir, options, name)[0]
