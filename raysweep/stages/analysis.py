"""Stage 4: tracked runs -> tidy table -> `raysweep.analysis.analyze` -> artifacts under `analysis/` on the study run.

Trials the study plans but the tracking store has never seen are added as MISSING rows, so the report lists them
with the failed ones instead of silently analysing fewer trials.
"""
from __future__ import annotations

import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from raysweep.analysis import AnalysisOptions, MixedCardsError, ReportSection, StudyAnalysis, analyze
from raysweep.analysis.noise import CLASS_COUNTS
from raysweep.analysis.outcome import log_tokenizer_outcomes
from raysweep.config.errors import ConfigError
from raysweep.config.plan import AnalysisJob, StudyPlan
from raysweep.config.spec import StudySpec, TokenizerTrial
from raysweep.data.class_counts import val_class_counts
from raysweep.engine.executors import Task
from raysweep.engine.stage import StudyRun
from raysweep.engine.study_plan import plan_study
from raysweep.metrics import metric_directions
from raysweep.tracking import Tracker
from raysweep.tracking.keys import TOKENIZER_ID_TAG, TOKENIZER_SEED_TAG
from raysweep.tracking.table import SORT_KEYS, latent_curve, length_ratio_curves, split_superseded, study_table

ARTIFACT_DIR = "analysis"
VIV_CURVE = "latent/velocity/viv_t"  # logged by the metric stage in the tokenizer run's curve JSON


SKIPPED = "SKIPPED"  # status of planned diffusion trials a proxy allocation did not choose


def missing_trials(study: StudySpec, table: pd.DataFrame, skipped: Collection[str] = (),
                   plan: StudyPlan | None = None, exclude_backbones: Collection[str] = ()) -> pd.DataFrame:
    """Rows (status MISSING) for planned tokenizer x backbone x seed trials that have no tracked run at all; those
    of the `skipped` tokenizers (not chosen by a proxy allocation) get status SKIPPED instead. Trials of
    `exclude_backbones` (a backbone ladder's cheap tier, not in the table) get none."""
    def identity(trial: TokenizerTrial) -> tuple[str, int]:
        return trial.tags()[TOKENIZER_ID_TAG], trial.seed

    seeds = table[TOKENIZER_SEED_TAG].astype(int) if TOKENIZER_SEED_TAG in table.columns else [0] * len(table)
    tracked_tokenizers = set(zip(table[TOKENIZER_ID_TAG], seeds)) if TOKENIZER_ID_TAG in table.columns else set()
    tracked_runs: set[tuple[tuple[str, int], str, int]] = set()
    if "backbone" in table.columns:
        ran = table["backbone"].notna()
        tracked_runs = set(zip(zip(table[TOKENIZER_ID_TAG][ran], pd.Series(seeds, index=table.index)[ran]),
                               table["backbone"][ran], table["seed"][ran].astype(int)))
    plan = plan or plan_study(study)
    rows: list[dict[str, Any]] = [{**tok.trial.tags(), TOKENIZER_SEED_TAG: tok.trial.seed, "status": "MISSING",
                                   "reason": "planned tokenizer trial without a tracked run"}
                                  for tok in plan.tokenizers if identity(tok.trial) not in tracked_tokenizers]
    rows += [{**run.tokenizer.trial.tags(), TOKENIZER_SEED_TAG: run.tokenizer.trial.seed, "backbone": run.backbone,
              "seed": run.seed,
              **({"status": SKIPPED, "reason": "not chosen by the proxy allocation (see its report section)"}
                 if run.tokenizer.id in skipped else
                 {"status": "MISSING", "reason": "planned diffusion trial without a tracked run"})}
             for run in plan.diffusion if identity(run.tokenizer.trial) in tracked_tokenizers
             and run.backbone not in exclude_backbones
             and (identity(run.tokenizer.trial), run.backbone, run.seed) not in tracked_runs]
    return pd.DataFrame(rows)


def superseded_runs(table: pd.DataFrame) -> tuple[pd.DataFrame, list[ReportSection]]:
    """(today's rows (`split_superseded`), a collapsed report section listing the SUPERSEDED runs once each; none
    when there are none): runs of inputs the study has changed since stay in MLflow and are named, never analysed."""
    current, old = split_superseded(table)
    if old.empty:
        return current, []
    runs = old[[c for c in ("tokenizer_id", TOKENIZER_SEED_TAG, "backbone", "seed", "reason")
                if c in old.columns]].drop_duplicates(ignore_index=True)
    note = (f"{len(runs)} tracked run(s) ran on inputs this study no longer has (e.g. before an edit of the study "
            "file): kept in MLflow, left out of every number in this report.")
    return current, [ReportSection("Superseded runs", runs, note, collapsed=True)]


def analysis_options(study: StudySpec, **overrides: Any) -> AnalysisOptions:
    """The study's `analysis:` section as options; `overrides` that are not None win (the CLI's flags)."""
    values = {**study.analysis.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    return AnalysisOptions(**{**values, "methods": tuple(values["methods"])}, seed=study.seed)


def run_analysis(study: StudySpec, tracker: Tracker, study_run_id: str,
                 options: AnalysisOptions | None = None, sections: Sequence[ReportSection] = (),
                 skipped: Collection[str] = (), plan: StudyPlan | None = None) -> StudyAnalysis:
    """Analyse the tracked study (with its `analysis:` options unless given) and log every artifact to the study
    run. The returned frames stay usable; its file paths pointed into a temporary folder that is gone (the files
    live on as MLflow artifacts). Scores from incomparable evaluation cards are bad input: a one-line ConfigError
    on `analysis.allow_mixed_cards`, the tracked runs untouched. `sections` are added to the report (e.g. the proxy
    allocation's); `skipped`: tokenizers whose diffusion trials a proxy allocation did not choose; `plan`: the
    study's plan (None: made here)."""
    options = options or analysis_options(study)
    plan = plan or plan_study(study)
    if not sections and not skipped:  # diffusion.allocation: proxy — its report section and unchosen tokenizers
        from raysweep.stages.allocation_gate import allocation_report

        sections, skipped = allocation_report(study, tracker, plan)
    cheap = study.ladder_backbones  # a backbone ladder's cheap tier: its own report section, never pooled
    table = study_table(tracker, cheap, plan.keys)
    table, superseded = superseded_runs(table)
    sections = [*sections, *superseded]
    missing = missing_trials(study, table, skipped, plan, cheap)
    if len(missing):
        table = pd.concat([table, missing.assign(cfg_scale=float("nan"), **{"gen/gfid": float("nan")})],
                          ignore_index=True)
        table = table.sort_values([k for k in SORT_KEYS if k in table.columns], na_position="last",
                                  ignore_index=True)
    counts = val_class_counts(study.dataset.name, study.dataset.val_size, study.dataset.num_classes)
    if counts is not None:  # the report's chance levels of label metrics
        table = table.assign(**{CLASS_COUNTS: ",".join(map(str, counts))})
    finished = table[table["status"] == "FINISHED"] if "status" in table.columns else table
    curves = None
    if "diffusion_run_id" in finished.columns:
        curves = (length_ratio_curves(tracker, sorted(finished["diffusion_run_id"].dropna().unique())),
                  latent_curve(tracker, sorted(finished["tokenizer_run_id"].dropna().unique()), VIV_CURVE))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / ARTIFACT_DIR
        try:
            result = analyze(table, out, metric_directions(), options, curves, study.name, sections)
        except MixedCardsError as err:
            raise ConfigError(study.source, "analysis.allow_mixed_cards", str(err)) from None
        tracker.log_artifact(study_run_id, out, None)
    log_tokenizer_outcomes(tracker, result.best)  # mean best gFID over seeds on each tokenizer run (issue 23)
    return result


def analyze_study(study: StudySpec, tracker: Tracker, study_run_id: str,
                  options: AnalysisOptions | None = None, sections: Sequence[ReportSection] = (),
                  skipped: Collection[str] = (), plan: StudyPlan | None = None) -> str:
    """`run_analysis`, returning the report's artifact path on the study run (what `raysweep run` prints)."""
    result = run_analysis(study, tracker, study_run_id, options, sections, skipped, plan)
    return f"{ARTIFACT_DIR}/{result.report.name}"


def task(job: AnalysisJob, run: StudyRun) -> Task:
    """On the driver, once every run it reads has ended; the report's artifact path goes to `run.report`."""

    def analyze() -> None:
        tracker = Tracker(run.ctx.tracking_uri, run.ctx.experiment)
        run.report(analyze_study(run.study, tracker, run.ctx.study_run_id, plan=run.plan))

    return Task(job.ref, "driver", analyze)
