"""`raysweep` command line: wiring only. Bad input is one line on stderr and exit code 2, never a traceback
(`-v` adds it); an internal error is its traceback and a line saying it is a bug (exit code 70)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from raysweep.config import ConfigError, load_study
from raysweep.config.errors import printable
from raysweep.config.plan import ConfirmationSlot, StudyPlan
from raysweep.config.spec import StudySpec
from raysweep.jsonout import dumps, print_json

if TYPE_CHECKING:
    from raysweep.analysis.external import TableColumns
    from raysweep.config.allocation import ProxyAllocation
    from raysweep.search.replay import ReplayStudy

EXIT_BAD_INPUT = 2
EXIT_BUG = 70  # sysexits' EX_SOFTWARE: raysweep's fault, not the input's
BUG_REPORT = ("this is a bug in raysweep, not in your input: please report it with the traceback above and the "
              "command you ran")


def _built_plan(study: StudySpec) -> StudyPlan:
    """The study's plan, built once per command (`plan_study` reads a finished search's outcome from the store)."""
    from raysweep.engine.study_plan import plan_study

    return plan_study(study)


def _plan(study: StudySpec, plan: StudyPlan) -> dict:
    tokenizers = [{"id": j.id, "key": j.key, **j.trial.tags(), "architecture": j.trial.architecture,
                   "latent": j.trial.latent, "regularizer": j.trial.regularizer, "params": j.trial.params,
                   "steps": j.trial.steps} for j in plan.tokenizers]
    diffusion = [{"id": j.id, "key": j.key, "tokenizer": j.tokenizer.id, "backbone": j.backbone, "seed": j.seed,
                  "steps": j.trial.steps} for j in plan.diffusion]
    # a tokenizer search not yet run: its confirmed tokenizers are unknown, their diffusion trials are slots
    diffusion += [{"id": j.id, "key": None, "tokenizer": None, "confirms_rank": j.rank, "backbone": j.trial.backbone,
                   "seed": j.seed, "steps": j.trial.steps} for j in plan.of(ConfirmationSlot)]
    out: dict[str, Any] = {"study": study.name, "root": str(study.root), "tracking_uri": study.tracking_uri,
                           "tokenizer_trials": tokenizers, "diffusion_trials": diffusion,
                           "metrics": study.metrics.names, "cfg_scales": study.evaluation.cfg_scales}
    if plan.search is not None:
        search = plan.search
        out["tokenizer_search"] = {"id": search.id, "key": search.key, **search.spec.model_dump(),
                                   "space": search.space, "finished": bool(plan.tokenizers)}
    return out


def _search_line(plan: dict) -> str:
    """One line on a study's tokenizer search (plan's text output, validate)."""
    s = plan["tokenizer_search"]
    state = "finished" if s["finished"] else "tokenizers unknown until it ends"
    return (f"tokenizer search ({s['algorithm']}, {s['mode']} {s['objective']}"
            + (f", {s['constraint']}" if s["constraint"] else "") + f"): {s['num_samples']} tokenizers, the best "
            f"{s['confirm']} feasible get the diffusion trials ({state})")


def cmd_validate(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    if args.preflight:  # what `run` checks first, plus reading every image; runs and writes nothing
        from raysweep.config.preflight import check_data, preflight

        preflight(study)
        check_data(study)
    plan = _plan(study, _built_plan(study))
    print(f"{args.study}: ok — {len(plan['tokenizer_trials'])} tokenizer trials, {len(plan['diffusion_trials'])} "
          "diffusion trials")
    if "tokenizer_search" in plan:
        print(_search_line(plan))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    built = _built_plan(study)
    plan = _plan(study, built)
    if args.json:
        from raysweep.estimate.gpu_hours import estimate_gpu_hours  # imports torch: only for --json

        plan["estimate"] = estimate_gpu_hours(study, built)
        spec = study.allocation
        if spec is not None:  # diffusion.allocation: proxy — its GPU-hours beside brute force
            from raysweep.config.tiers import checkpoint_count
            from raysweep.search.estimate import proxy_estimate

            steps = max((d.steps for d in study.diffusion_trials), default=0)
            plan["proxy_estimate"] = proxy_estimate(plan["estimate"], spec,
                                                    checkpoints=checkpoint_count(steps, study.storage.checkpoint_every))
        print_json(plan)
        return 0
    print(f"study {plan['study']} -> {plan['root']}")
    print(f"{'tokenizer':<28} {'family':<12} {'cluster':<10} {'variant':<30} steps")
    for t in plan["tokenizer_trials"]:
        print(f"{t['id']:<28} {t['family']:<12} {t['cluster']:<10} {t['variant'][:30]:<30} {t['steps']}")
    if "tokenizer_search" in plan:
        print(_search_line(plan))
    print(f"{len(plan['diffusion_trials'])} diffusion trials "
          f"({len({d['backbone'] for d in plan['diffusion_trials']})} backbone(s)); cfg scales {plan['cfg_scales']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    if args.address:
        try:
            study.ray.address = args.address
        except ValueError:
            raise ConfigError("--address", "", f"{args.address!r} is not a Ray address; allowed: auto, local, "
                                               "HOST:PORT or ray://HOST:PORT") from None
    from raysweep.api import run

    def say_logs(log: Path) -> None:
        print(f"library logs: {log}" + ("" if args.verbose else "   (-v shows them here too)"), flush=True)

    result = run(study, analyze=not args.no_analysis, verbose=args.verbose, on_logs=say_logs)
    print(f"MLflow UI: raysweep ui {args.study}   (tracking URI {study.tracking_uri})")
    if result.report:
        print(f"report: artifact '{result.report}' of run {result.study_run_id}")
    not_chosen = [s for s in result.skipped if s["stage"] == "diffusion"]
    if not_chosen:
        print(f"{len(not_chosen)} diffusion trial(s) skipped ({not_chosen[0]['reason']}); their tokenizers' gFID is "
              "predicted (pred/gfid on the tokenizer runs, and the report's allocation section)")
    return 1 if result.failed else 0


def _names(text: str | None) -> tuple[str, ...]:
    """`a,b,c` -> ('a', 'b', 'c'); None or empty -> ()."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _table_columns(args: argparse.Namespace) -> TableColumns:
    """The column options shared by `analyze --table` and `replay --table`."""
    from raysweep.analysis.external import TableColumns

    return TableColumns(id=args.id, target=args.target, metrics=_names(args.metrics),
                        lower_is_better=_names(args.lower_is_better), group=args.group)


def _analyze_table(args: argparse.Namespace) -> int:
    """`analyze --table FILE`: the study analysis of any results table (raysweep.analysis.external)."""
    import contextlib
    import tempfile
    from pathlib import Path

    from raysweep.analysis import AnalysisOptions
    from raysweep.analysis.external import analyze_table

    if args.study:
        raise ConfigError("raysweep analyze", "study", "give a study file or --table FILE, not both")
    options = AnalysisOptions(**({"n_boot": args.n_boot} if args.n_boot else {}),
                              allow_mixed_cards=bool(args.allow_mixed_cards))
    columns = _table_columns(args)
    with contextlib.ExitStack() as stack:
        out = args.out or (stack.enter_context(tempfile.TemporaryDirectory()) if args.json
                           else f"{Path(args.table).stem}-analysis")
        if args.json:  # stdout holds only the JSON object
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        result, as_json = analyze_table(args.table, columns, out, options)
    if args.json:
        print_json(as_json)
    else:
        print(f"report: {result.report}; {as_json['n']} tokenizers, {len(result.best)} runs analysed, "
              f"{len(result.excluded)} rows excluded")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    if args.table:
        return _analyze_table(args)
    if not args.study:
        raise ConfigError("raysweep analyze", "study", "give a study file or --table FILE")
    study = load_study(args.study)
    from raysweep.analysis import format_comparison
    from raysweep.analysis.external import correlations_json
    from raysweep.analysis.tidy import SCORE_DIRECTIONS, resolve_directions
    from raysweep.metrics import metric_directions
    from raysweep.runner import STUDY_STAGE
    from raysweep.stages.analysis import ARTIFACT_DIR, analysis_options, run_analysis
    from raysweep.tracking import Tracker

    require_tracking_store(study, args.study)  # Tracker would create a missing store
    tracker = Tracker(study.tracking_uri, study.experiment_name)
    runs = tracker.runs(STUDY_STAGE)
    if not runs:
        raise ConfigError(args.study, "", "no tracked run for this study yet; run `raysweep run` first")
    options = analysis_options(study, n_boot=args.n_boot, allow_mixed_cards=args.allow_mixed_cards)
    if args.json:
        import contextlib

        with contextlib.redirect_stdout(sys.stderr):
            result = run_analysis(study, tracker, runs[0].info.run_id, options)
        directions = resolve_directions(result.best.columns, {**metric_directions(), **SCORE_DIRECTIONS})
        print_json(correlations_json(result.correlations, directions, {}, int(result.best["tokenizer_id"].nunique())))
        return 0
    result = run_analysis(study, tracker, runs[0].info.run_id, options)
    print(f"report: artifact '{ARTIFACT_DIR}/{result.report.name}' of run {runs[0].info.run_id}; "
          f"{len(result.best)} runs analysed, {len(result.excluded)} rows excluded")
    if args.compare_paper:
        print(format_comparison(result.paper))
    return 0


def _replay_input(args: argparse.Namespace) -> tuple[ReplayStudy, ProxyAllocation | None, float]:
    """(the complete study, its proxy spec, non-diffusion compute per tokenizer in diffusion-cost units)."""
    from raysweep.search.replay import study_from_external, study_from_table

    if args.table:
        if args.study:
            raise ConfigError("raysweep replay", "study", "give a study file or --table FILE, not both")
        from raysweep.analysis.external import read_table

        study, dropped = study_from_external(read_table(args.table), _table_columns(args), _names(args.features),
                                             args.table, args.cost, args.cheap)
        if dropped:
            _stderr(f"{args.table}: {len(dropped)} id(s) left out for a missing value: {', '.join(dropped[:10])}")
        return study, None, args.tokenizer_cost
    if not args.study:
        raise ConfigError("raysweep replay", "study", "give a finished study file or --table FILE")
    spec = load_study(args.study)
    from raysweep.analysis.loading import load_tracked_table as load_table
    from raysweep.analysis.tidy import SCORE_DIRECTIONS, latent_metric_columns, resolve_directions
    from raysweep.estimate.gpu_hours import estimate_gpu_hours
    from raysweep.metrics import metric_directions
    from raysweep.search.estimate import DIFFUSION_STAGES

    require_tracking_store(spec, args.study)  # reading the table would create a missing store
    try:
        table = load_table(spec.tracking_uri, spec.experiment_name, _built_plan(spec).keys)
    except ValueError as err:
        raise ConfigError(args.study, "name", f"{err}; run `raysweep run` first") from None
    allocation = spec.allocation
    features = list(_names(args.features) or (allocation and allocation.features) or latent_metric_columns(table))
    missing = [f for f in features if f not in table.columns]
    if missing or not features:
        raise ConfigError(args.study, "--features", f"{missing or 'none'} not tracked; allowed: "
                                                    f"{', '.join(sorted(latent_metric_columns(table)))}")
    directions = resolve_directions(features, {**metric_directions(), **SCORE_DIRECTIONS})
    study = study_from_table(table, features, features[0], spec.name, directions=directions)
    estimate = estimate_gpu_hours(spec, _built_plan(spec))
    diffusion = sum(estimate["stages"][s]["gpu_hours"] for s in DIFFUSION_STAGES)
    return study, allocation, (estimate["gpu_hours"] - diffusion) / diffusion if diffusion else 0.0


def cmd_replay(args: argparse.Namespace) -> int:
    """Allocation policies replayed on complete results: how much diffusion compute each needs for the answer."""
    import numpy as np

    from raysweep.search.comparison import CHEAP_COST, compare
    from raysweep.search.policies import policies_for
    from raysweep.search.replay import subsample

    if args.replays < 1 or args.batch < 1 or not 0 < args.subset <= 1:
        raise ConfigError("raysweep replay", "--replays/--batch/--subset",
                          f"need replays >= 1, batch >= 1, 0 < subset <= 1; got {args.replays}, {args.batch}, "
                          f"{args.subset}")
    study, spec, tokenizer_cost = _replay_input(args)
    studies = [subsample(study, args.subset, np.random.default_rng([seed, 11])) for seed in range(args.replays)]
    result = compare(studies, policies_for(study, spec), args.batch,
                     CHEAP_COST if args.cheap_cost is None else args.cheap_cost, tokenizer_cost, study.name)
    if args.json:
        print_json(result.as_json())
        return 0
    print(f"{result.case}: {result.replays} replays of {result.n_tokenizers} tokenizers (subset {args.subset:g}), "
          f"batch {result.batch}, r(complete) {result.true_r:.2f}; fractions of brute-force diffusion compute at "
          "which >= 90% of replays have the answer")
    print(f"{'policy':<36} {'top-1':>7} {'r ±0.1':>7} {'rounds':>7} {'of total':>9}")
    for name, p in [*result.policies.items(), *result.reference.items()]:
        print(f"{name:<36} {p.top1_fraction:>7.0%} {p.r_fraction:>7.0%} {p.top1_rounds:>7} "
              f"{p.top1_share_total:>9.0%}")
    print(f"default: proxy; lowest top-1 fraction: {result.best}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The live view's table from the tracking store (no Ray); `--json`: the store's stage-by-stage status."""
    study = load_study(args.study)
    require_tracking_store(study, args.study)
    if args.json:
        from raysweep.engine.status import study_status

        print(dumps(study_status(study)))
        return 0
    from raysweep.tracking.table import open_study
    from raysweep.view.snapshot import render_status, snapshot_events

    try:
        tracker = open_study(study.tracking_uri, study.experiment_name)
    except ValueError as err:
        raise ConfigError(args.study, "name", f"{err}; run `raysweep run` first") from None
    # trials have runs of their own; metric jobs log on their tokenizer's or diffusion model's run
    from raysweep.engine.status import status_lines, study_status
    from raysweep.engine.study_plan import plan_study

    plan = plan_study(study)
    planned = [(job.id, job.stage) for job in plan.jobs if job.stage in ("tokenizer_search", "tokenizer", "diffusion")]
    render_status(snapshot_events(tracker.runs(), planned=planned, keys=plan.keys),
                  title=f"study {study.name} ({study.tracking_uri})")
    for line in status_lines(study_status(study, plan=plan)):
        print(line)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Move the results of a store written under an earlier version's keys (0.1.0, 0.2.0, 0.3.0) under the current
    keys; nothing is retrained."""
    study = load_study(args.study)
    from raysweep.engine.lock import study_lock
    from raysweep.engine.migrate import migrate_store
    from raysweep.engine.store import Store
    from raysweep.engine.study_plan import plan_study

    store = Store(study.root, study.latent_storage)
    with study_lock(study.root, hint=f"raysweep status {args.study}"):
        moves = migrate_store(study, plan_study(study, store), store)
    for move in moves:
        print(f"{move.job.stage} '{move.job.id}': {move.old.name} -> {move.new.name} "
              f"(assumed at migration: {', '.join(move.assumed)})")
    print(f"{len(moves)} result(s) migrated, nothing retrained; `raysweep status {args.study}` lists what was assumed")
    return 0


def require_tracking_store(study: StudySpec, study_file: str) -> None:
    """`status` and `ui` read a study's store; opening a missing one would create it (an empty sqlite DB or
    ./mlruns), so a study never run (or a store that is no database) is refused first, writing nothing. Server
    stores (http, postgresql...) are left to the client, which creates no local file."""
    from raysweep.tracking.ui import store_problem

    problem = store_problem(study.tracking_uri)
    if problem is not None:
        raise ConfigError(study_file, "", f"{problem.format(uri=study.tracking_uri)}; start the study with "
                                          f"`raysweep run {study_file}`")


def _stderr(line: str) -> None:
    """One line on stderr, control characters escaped (file names and values in it come from the user)."""
    print(printable(line), file=sys.stderr, flush=True)


def _shape(text: str) -> tuple[int, int, int]:
    """`--shape C,H,W` -> (C, H, W); argparse turns the error into a one-line usage error (exit 2)."""
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected C,H,W (three positive integers), got '{text}'")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (argparse turns the error into the one-line usage error)."""

    def parse(text: str) -> int:
        if not text.strip().isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return int(text)

    parse.__name__ = "integer"
    return parse


def _number(value: object) -> str:
    return "null" if value is None else f"{value:.6g}"


def cmd_metrics(args: argparse.Namespace) -> int:
    from raysweep.latent_files import metrics_for_files

    only = [n for n in args.only.split(",") if n] if args.only else None
    report = metrics_for_files(args.paths, only, args.shape, say=_stderr)  # paths or URIs
    if args.json:
        print(dumps({**report.values, "undefined": report.undefined}))
        return 0
    for key, value in report.values.items():
        shown = f"[{', '.join(map(_number, value))}]" if isinstance(value, list) else _number(value)
        why = f"  (undefined: {report.undefined[key]})" if key in report.undefined else ""
        print(f"{key:<40} {shown}{why}")
    return 0


def cmd_latents_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raysweep.data.importers import import_latents

    done = import_latents(Path(args.src), Path(args.dest), labels=args.labels and Path(args.labels),
                          masks=args.masks and Path(args.masks), tokenizer_id=args.tokenizer_id)
    ignored = f"; ignored keys: {', '.join(done.ignored)}" if done.ignored else ""
    print(f"{args.dest}: {done.rows} latents of shape {list(done.shape)} in {len(done.files)} file(s){ignored}")
    return 0


def _lazy_help(p: argparse.ArgumentParser, module: str, function: str) -> None:
    """`-h/--help` whose epilog `module.function()` builds only when asked: the metric registry and the importers
    import torch, numpy and pyarrow (seconds), which no other command should pay for."""

    class LazyHelp(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
            parser.epilog = getattr(importlib.import_module(module), function)()
            parser.print_help()
            parser.exit()

    p.add_argument("-h", "--help", action=LazyHelp, nargs=0, default=argparse.SUPPRESS,
                   help="show this help (with the tables below) and exit")


def cmd_ui(args: argparse.Namespace) -> NoReturn:
    """MLflow's UI on the study's store, and the URL that opens straight on its runs with the headline metrics
    (raysweep.tracking.ui says why the URL, not the experiment alone, decides that). This process becomes the
    server (exec), so stopping `raysweep ui` (Ctrl-C, SIGTERM) stops the server."""
    from raysweep.tracking.table import open_study
    from raysweep.tracking.ui import check_port_free, runs_url, server_command, server_env

    study = load_study(args.study)
    require_tracking_store(study, args.study)
    try:
        experiment_id = open_study(study.tracking_uri, study.experiment_name).experiment_id  # (re)tags it
    except ValueError as err:
        raise ConfigError(args.study, "name", f"{err}; run `raysweep run` first") from None
    check_port_free(args.host, args.port)
    cmd = server_command(study.tracking_uri, args.host, args.port, args.workers)
    print(" ".join(cmd))
    print(f"open {runs_url(f'http://{args.host}:{args.port}', experiment_id)}", flush=True)
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, server_env())


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as the one `error:` line every other failure gets (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        _stderr(f"error: {self.prog}: {message} (see `{self.prog} -h`)")
        self.exit(EXIT_BAD_INPUT)


def _verbose(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`-v/--verbose` on every subcommand."""
    p.add_argument("-v", "--verbose", action="store_true",
                   help="a failing command's traceback on stderr; `run`: Ray, Ray Data, Ray Tune and MLflow logs "
                        "and Tune's tables on the terminal too")
    return p


def _table_options(p: argparse.ArgumentParser) -> None:
    """--table and its column options (analyze, replay)."""
    p.add_argument("--table", metavar="FILE", help="a results table (CSV or Parquet): one row per tokenizer or run")
    p.add_argument("--id", default="tokenizer_id", help="--table: the tokenizer column (rows sharing it are seeds)")
    p.add_argument("--target", default="gfid", help="--table: the gFID-like column (lower is better)")
    p.add_argument("--metrics", metavar="A,B", help="--table: metric columns (default: every other numeric one)")
    p.add_argument("--lower-is-better", metavar="A,B", help="--table: metrics where lower means a better latent")
    p.add_argument("--group", metavar="COLUMN", help="--table: the family column")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="raysweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
            **kwargs: Any) -> argparse.ArgumentParser:
        p = _verbose(sub.add_parser(name, help=help_, **kwargs))
        p.set_defaults(fn=fn)
        return p

    p = add("validate", cmd_validate, "check a study file")
    p.add_argument("study")
    p.add_argument("--preflight", action="store_true",
                   help="also check this machine: paths, writable storage, GPUs, weights, readable image data")
    p = add("plan", cmd_plan, "show the trial table without running")
    p.add_argument("study")
    p.add_argument("--json", action="store_true")
    p = add("run", cmd_run, "run or resume a study")
    p.add_argument("study")
    p.add_argument("--address", help="Ray address, e.g. 'auto' on a cluster head")
    p.add_argument("--no-analysis", action="store_true")
    p = add("analyze", cmd_analyze, "recompute the analysis of a tracked study, or analyse any results table")
    p.add_argument("study", nargs="?", help="a study file (optional with --table)")
    _table_options(p)
    p.add_argument("--out", metavar="DIR", help="--table: write the report here (default: <FILE stem>-analysis)")
    p.add_argument("--json", action="store_true",
                   help='only {"n", "correlations": [{metric, method, n, r_raw, r, ci_low, ci_high}]} on stdout')
    p.add_argument("--compare-paper", action="store_true", help="print our coefficients beside the paper's")
    p.add_argument("--allow-mixed-cards", action=argparse.BooleanOptionalAction,
                   help="analyse scores produced under different evaluation cards together "
                        "(default: the study's analysis.allow_mixed_cards)")
    p.add_argument("--n-boot", type=_int_in(10, 10**6), help="bootstrap resamples per confidence interval "
                                              "(default: the study's analysis.n_boot, 1000)")
    p = add("replay", cmd_replay, "replay allocation policies on a finished study or any results table")
    p.add_argument("study", nargs="?", help="a finished study file (optional with --table)")
    _table_options(p)
    p.add_argument("--features", metavar="A,B", help="proxy features, each also a sort:<feature> policy; the first "
                                                      "is the correlation metric (default: the metrics)")
    p.add_argument("--cost", metavar="COLUMN", help="--table: per-row diffusion cost (default: equal)")
    p.add_argument("--cheap", metavar="COLUMN", help="--table: a cheap-tier gFID column (adds the cheap policy)")
    p.add_argument("--cheap-cost", type=float, metavar="F",
                   help="a cheap-tier run's cost over a full diffusion run (default 0.2)")
    p.add_argument("--tokenizer-cost", type=float, default=0.0, metavar="C",
                   help="--table: tokenizer training + metrics per tokenizer, in --cost units (for the share of "
                        "total compute; default 0)")
    p.add_argument("--batch", type=int, default=1, help="tokenizers launched per round (default 1)")
    p.add_argument("--replays", type=int, default=20, help="tokenizer subsets replayed (default 20)")
    p.add_argument("--subset", type=float, default=0.8,
                   help="fraction of the tokenizers each replay resamples (default 0.8)")
    p.add_argument("--json", action="store_true", help='{"policies": {...}, "default": "proxy", "reference": ...}')
    p = add("status", cmd_status, "what is finished, running or failed")
    p.add_argument("study")
    p.add_argument("--json", action="store_true")
    p = add("migrate", cmd_migrate, "reuse an earlier raysweep's store (0.1.0, 0.2.0, 0.3.0) under the current keys")
    p.add_argument("study")
    p = add("metrics", cmd_metrics, "latent metrics of Parquet latent files", add_help=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description="Latent metrics of Parquet latent files (raysweep's, or any tool's that follow the contract "
                        "below; convert other formats with `raysweep latents import`).")
    _lazy_help(p, "raysweep.latent_files", "metrics_help")
    p.add_argument("paths", nargs="+", help="latent files or directories of them (paths or pyarrow.fs URIs)")
    p.add_argument("--only", metavar="NAMES", help="comma-separated metric names (listed below)")
    p.add_argument("--shape", type=_shape, metavar="C,H,W",
                   help="C,H,W of one latent, for files whose footer lacks raysweep.latent_shape")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (null + reason where undefined)")
    latents = sub.add_parser("latents", help="latent files: import other formats into the contract").add_subparsers(
        dest="latents_command", required=True, metavar="SUBCOMMAND")
    p = latents.add_parser("import", help="turn .npy, .npz, .safetensors or torch files into latent Parquet",
                           add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Write SRC's latents, labels and optional masks as latent Parquet files in "
                                       "DEST (a new or empty directory).")
    _lazy_help(p, "raysweep.data.importers", "import_help")
    _verbose(p).set_defaults(fn=cmd_latents_import)
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--labels", metavar="FILE", help="labels from another file (any SRC format)")
    p.add_argument("--masks", metavar="FILE", help="foreground masks from another file (any SRC format)")
    p.add_argument("--tokenizer-id", help="written as raysweep.tokenizer_id (default: SRC's file name stem)")
    p = add("ui", cmd_ui, "open the MLflow UI on a study's tracking store")
    p.add_argument("study")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_int_in(1, 65535), default=5000)
    p.add_argument("--workers", type=_int_in(1, 64), default=1,
                   help="server processes (MLflow's own default, 4, is for shared servers; one person needs one)")
    return parser


def user_error(err: BaseException) -> str | None:
    """The message of an error the user's input caused, None for a bug. Input is checked where it is read and
    refused with raysweep's own ValueErrors (ConfigError, LatentDataError... naming file, key or column); the file
    system's errors on the paths a user gave (no such file, permission, name too long) carry that path."""
    if isinstance(err, ValueError) and type(err).__module__.startswith("raysweep"):
        return str(err)
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    if isinstance(err, FileNotFoundError):
        return str(err)
    if isinstance(err, ImportError) and "pip install" in str(err):  # an optional extra the input needs
        return str(err)
    return None


def _funnel(args: argparse.Namespace, verbose: bool) -> int:
    """Run the command; every failure ends here as one `error:` line (control characters escaped)."""
    try:
        code: int = args.fn(args)
        return code
    except Exception as err:
        line = user_error(err)
        if line is None or verbose:
            traceback.print_exc()
        if line is None:
            _stderr(f"error: internal error ({type(err).__name__}: {err}); {BUG_REPORT}")
            return EXIT_BUG
        _stderr(f"error: {line}")
        return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    if verbose:
        return _funnel(args, verbose)
    with warnings.catch_warnings(record=True) as caught:  # a library's warning must not precede the error line
        code = _funnel(args, verbose)
    if code != EXIT_BAD_INPUT:  # the command ran: its warnings, once each, after its output
        for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
            _stderr(f"warning: {message}")
    return code


if __name__ == "__main__":
    sys.exit(main())
