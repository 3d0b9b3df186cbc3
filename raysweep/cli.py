"""`raysweep` command line: wiring only. Bad input is one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from raysweep.config import ConfigError, load_study
from raysweep.config.allocation import allocation_of
from raysweep.config.plan import StudyPlan
from raysweep.config.spec import StudySpec

EXIT_BAD_INPUT = 2


def _plan(study: StudySpec) -> dict:
    plan = StudyPlan.from_spec(study)
    tokenizers = [{"id": j.id, "key": j.key, **j.trial.tags(), "architecture": j.trial.architecture,
                   "latent": j.trial.latent, "regularizer": j.trial.regularizer, "params": j.trial.params,
                   "steps": j.trial.steps} for j in plan.tokenizers]
    diffusion = [{"id": j.id, "key": j.key, "tokenizer": j.tokenizer.id, "backbone": j.backbone, "seed": j.seed,
                  "steps": j.trial.steps} for j in plan.diffusion]
    return {"study": study.name, "root": str(study.root), "tracking_uri": study.tracking_uri,
            "tokenizer_trials": tokenizers, "diffusion_trials": diffusion,
            "metrics": study.metrics.names, "cfg_scales": study.evaluation.cfg_scales}


def cmd_validate(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    if args.preflight:  # what `run` checks first, plus reading every image; runs and writes nothing
        from raysweep.config.preflight import check_data, preflight

        preflight(study)
        check_data(study)
    plan = StudyPlan.from_spec(study)
    print(f"{args.study}: ok — {len(plan.tokenizers)} tokenizer trials, {len(plan.diffusion)} diffusion trials")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    plan = _plan(study)
    if args.json:
        from raysweep.pipeline.estimate import estimate_gpu_hours  # imports torch: only for --json

        plan["estimate"] = estimate_gpu_hours(study)
        spec = allocation_of(study)
        if spec is not None:  # diffusion.allocation: proxy — its GPU-hours beside brute force
            from raysweep.search.estimate import proxy_estimate

            steps = max((d.steps for d in study.diffusion_trials), default=0)
            plan["proxy_estimate"] = proxy_estimate(plan["estimate"], spec,
                                                    checkpoints=max(1, steps // study.storage.checkpoint_every))
        print(json.dumps(plan, indent=2))
        return 0
    print(f"study {plan['study']} -> {plan['root']}")
    print(f"{'tokenizer':<28} {'family':<12} {'cluster':<10} {'variant':<30} steps")
    for t in plan["tokenizer_trials"]:
        print(f"{t['id']:<28} {t['family']:<12} {t['cluster']:<10} {t['variant'][:30]:<30} {t['steps']}")
    print(f"{len(plan['diffusion_trials'])} diffusion trials "
          f"({len({d['backbone'] for d in plan['diffusion_trials']})} backbone(s)); cfg scales {plan['cfg_scales']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    if args.address:
        study.ray.address = args.address
    from raysweep.pipeline.runner import run_study

    result = run_study(study, analyze=not args.no_analysis)
    print(f"MLflow UI: raysweep ui {args.study}   (tracking URI {study.tracking_uri})")
    if result.report:
        print(f"report: artifact '{result.report}' of run {result.study_run_id}")
    not_chosen = [s for s in result.skipped if s["stage"] == "diffusion"]
    if not_chosen:
        print(f"{len(not_chosen)} diffusion trial(s) skipped ({not_chosen[0]['reason']}); their tokenizers' gFID is "
              "predicted (pred/gfid on the tokenizer runs, and the report's allocation section)")
    return 1 if result.failed else 0


def cmd_analyze(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    from raysweep.analysis import format_comparison
    from raysweep.pipeline.analysis_stage import ARTIFACT_DIR, analysis_options, run_analysis
    from raysweep.pipeline.runner import STUDY_STAGE
    from raysweep.tracking import Tracker

    tracker = Tracker(study.tracking_uri, study.experiment_name)
    runs = tracker.runs(STUDY_STAGE)
    if not runs:
        raise ConfigError(args.study, "", "no tracked run for this study yet; run `raysweep run` first")
    options = analysis_options(study, n_boot=args.n_boot, allow_mixed_cards=args.allow_mixed_cards)
    result = run_analysis(study, tracker, runs[0].info.run_id, options)
    print(f"report: artifact '{ARTIFACT_DIR}/{result.report.name}' of run {runs[0].info.run_id}; "
          f"{len(result.best)} runs analysed, {len(result.excluded)} rows excluded")
    if args.compare_paper:
        print(format_comparison(result.paper))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from raysweep.pipeline.status import study_status

    print(json.dumps(study_status(load_study(args.study)), indent=2) if args.json
          else study_status(load_study(args.study), text=True))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from raysweep.pipeline.latent_files import metrics_for_files

    only = [n for n in args.only.split(",") if n] if args.only else None
    values = metrics_for_files(args.paths, only)  # paths or URIs
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        for key, value in values.items():
            print(f"{key:<40} {value:.6g}" if isinstance(value, float) else f"{key:<40} {value}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import subprocess

    study = load_study(args.study)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", study.tracking_uri,
           "--host", args.host, "--port", str(args.port)]
    print(" ".join(cmd))
    return subprocess.call(cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raysweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
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
    p = add("analyze", cmd_analyze, "recompute the analysis of a tracked study")
    p.add_argument("study")
    p.add_argument("--compare-paper", action="store_true", help="print our coefficients beside the paper's")
    p.add_argument("--allow-mixed-cards", action=argparse.BooleanOptionalAction,
                   help="analyse scores produced under different evaluation cards together "
                        "(default: the study's analysis.allow_mixed_cards)")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples per confidence interval "
                                              "(default: the study's analysis.n_boot, 1000)")
    p = add("status", cmd_status, "what is finished, running or failed")
    p.add_argument("study")
    p.add_argument("--json", action="store_true")
    p = add("metrics", cmd_metrics, "latent metrics of Parquet latent files")
    p.add_argument("paths", nargs="+")
    p.add_argument("--only", help="comma-separated metric names")
    p.add_argument("--json", action="store_true")
    p = add("ui", cmd_ui, "open the MLflow UI on a study's tracking store")
    p.add_argument("study")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, FileNotFoundError) as err:
        if type(err).__module__.startswith("raysweep") or isinstance(err, FileNotFoundError):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


if __name__ == "__main__":
    sys.exit(main())
