"""The study DAG: data -> 0 reference net -> 1 tokenizer sweep -> 2 latent metrics -> 3 diffusion sweep -> 4 analysis.

Every stage is idempotent (see `store.py` and `tracking.Tracker.open_run`), so `run_study` is also `resume_study`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from raysweep.config.errors import ConfigError
from raysweep.config.hashing import config_hash, flatten
from raysweep.config.preflight import preflight
from raysweep.config.spec import StudySpec
from raysweep.pipeline.context import TrialContext
from raysweep.pipeline.diffusion_stage import diffusion_payload, train_diffusion_trial
from raysweep.pipeline.images import prepare_images
from raysweep.pipeline.reference_stage import prepare_reference
from raysweep.pipeline.store import Store
from raysweep.pipeline.tokenizer_stage import tokenizer_payload, train_tokenizer_trial
from raysweep.pipeline.tune_stage import run_trials
from raysweep.tracking import Tracker

if TYPE_CHECKING:
    from raysweep.pipeline.model_metric_stage import ModelMetricOutput

STUDY_STAGE = "study"


@dataclass
class StudyResult:
    study_run_id: str
    tokenizers: list[dict[str, Any]] = field(default_factory=list)
    diffusion: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    report: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _log(msg: str) -> None:
    print(f"[raysweep] {msg}", flush=True)


def _init_ray(study: StudySpec) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if study.ray.address:
        ray.init(address=study.ray.address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=study.ray.num_cpus, include_dashboard=False, log_to_driver=True)


def _context(study: StudySpec, dataset_key: str, study_run_id: str, weights: str | None) -> TrialContext:
    threads = study.resources.torch_threads or max(1, int(study.resources.tokenizer.cpu))
    return TrialContext(root=str(study.root), tracking_uri=study.tracking_uri, experiment=study.experiment_name,
                        study_run_id=study_run_id, dataset_key=dataset_key, num_classes=study.dataset.num_classes,
                        image_size=study.dataset.image_size, feature_network=study.reference.feature_network,
                        feature_weights=weights, torch_threads=threads, log_every=study.storage.checkpoint_every,
                        latent_root=study.latent_storage)


def open_study_run(study: StudySpec, tracker: Tracker) -> str:
    """The root of the run tree, one per study name: editing the study (more tokenizers, another CFG scale) keeps
    the tree whole. Params are those of the first run; the tag and `study.resolved.yaml` follow the latest."""
    run_id = tracker.open_run(study.name, STUDY_STAGE, config_hash({"study": study.name}),
                              params=flatten(study.model_dump(mode="json")))
    tracker.set_tags(run_id, {"raysweep.study_config_hash": study.key()})
    resolved = {**study.model_dump(mode="json"),
                "resolved_tokenizers": [t.model_dump() for t in study.tokenizer_trials],
                "resolved_diffusion": [d.model_dump() for d in study.diffusion_trials]}
    tracker.log_text(run_id, yaml.safe_dump(resolved, sort_keys=False), "study.resolved.yaml")
    return run_id


def run_study(study: StudySpec, analyze: bool = True) -> StudyResult:
    """Run (or resume) every stage of a study on the current Ray cluster."""
    preflight(study)  # bad paths, unwritable storage, missing GPUs: one-line errors before anything is written
    store = Store(study.root, study.latent_storage)
    study.root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:  # unreadable or inconsistent image data is bad input, reported before anything is tracked
        dataset_key = prepare_images(study.dataset, store)
    except (ValueError, OSError) as err:
        raise ConfigError(study.source, "dataset", str(err)) from None
    tracker = Tracker(study.tracking_uri, study.experiment_name)  # create the DB and experiment before trials
    study_run_id = open_study_run(study, tracker)
    result = StudyResult(study_run_id)
    _log(f"study '{study.name}' in {study.root} (MLflow: {study.tracking_uri}, run {study_run_id})")
    try:
        weights = prepare_reference(study.reference, store, dataset_key, tracker, study_run_id)
        result.seconds["reference"] = time.perf_counter() - t0
        _init_ray(study)
        ctx = _context(study, dataset_key, study_run_id, weights)
        _tokenizer_stage(study, ctx, store, result)
        _metric_stage(study, ctx, store, tracker, result)
        _model_metric_stage(study, ctx, store, tracker, result)
        _diffusion_stage(study, ctx, store, result)
        _diffusion_fisher_stage(study, ctx, store, tracker, result)
        if analyze:
            from raysweep.pipeline.analysis_stage import analyze_study

            t0 = time.perf_counter()
            result.report = analyze_study(study, tracker, study_run_id)
            result.seconds["analysis"] = time.perf_counter() - t0
    except BaseException as err:
        tracker.finish(study_run_id, "FAILED" if isinstance(err, Exception) else "KILLED",
                       reason=f"{type(err).__name__}: {err}")
        raise
    tracker.log_metrics(study_run_id, {f"time/{k}_s": v for k, v in result.seconds.items()})
    tracker.finish(study_run_id)
    _log(f"done in {sum(result.seconds.values()):.0f}s; {len(result.failed)} failed trial(s)")
    return result


def _tokenizer_stage(study: StudySpec, ctx: TrialContext, store: Store, result: StudyResult) -> None:
    t0 = time.perf_counter()
    payloads = [tokenizer_payload(t, ctx) for t in study.tokenizer_trials]
    todo = sum(store.result(store.tokenizer(p["key"])) is None for p in payloads)
    _log(f"stage 1: {len(payloads)} tokenizer trials ({todo} to train)")
    summaries = run_trials("tokenizers", train_tokenizer_trial, payloads, study.tune_storage,
                           study.resources.tokenizer.model_dump())
    result.failed += [s for s in summaries if s["error"]]
    for p in payloads:
        done = store.result(store.tokenizer(p["key"]))
        if done is not None:
            result.tokenizers.append({"id": p["id"], "key": p["key"], "run_id": done["run_id"]})
    result.seconds["tokenizers"] = time.perf_counter() - t0


def _metric_stage(study: StudySpec, ctx: TrialContext, store: Store, tracker: Tracker,
                  result: StudyResult) -> None:
    from raysweep.data import latent_files, read_latent_meta
    from raysweep.pipeline.metric_logging import log_latent_metrics
    from raysweep.pipeline.metric_stage import compute_latent_metrics, resolved_params

    t0 = time.perf_counter()
    spec = study.metrics
    names = _metric_names(study, "latents")
    for i, tok in enumerate(result.tokenizers if names else []):
        marker = store.tokenizer(tok["key"]) / "metrics"
        if store.result(marker) is not None:
            continue
        _log(f"stage 2: latent metrics {i + 1}/{len(result.tokenizers)} ({tok['id']}) on {spec.actors} actors")
        values = compute_latent_metrics(store.latents(tok["key"], "val"), names, spec.params, spec.actors,
                                        spec.batch_size, study.resources.metric_actor.cpu)
        shape = read_latent_meta(latent_files(store.latents(tok["key"], "val"))[0]).shape
        log_latent_metrics(tracker, tok["run_id"], values, marker, resolved_params(names, spec.params, shape))
        store.mark_done(marker, {"metrics": sorted(values)})
    result.seconds["metrics"] = time.perf_counter() - t0


def _metric_names(study: StudySpec, needs: str) -> list[str]:
    """The study's metrics that consume `needs`: latents (the Ray Data pool), a tokenizer or a diffusion model."""
    from raysweep.metrics.model import MODEL_METRICS

    return [n for n in study.metrics.names
            if (MODEL_METRICS[n].needs if n in MODEL_METRICS else "latents") == needs]


def _remote(fn: Any, study: StudySpec) -> Any:
    """A Ray task with the metric actors' resources, so model metrics land on a GPU node of a cluster."""
    import ray

    res = study.resources.metric_actor
    return ray.remote(fn).options(num_cpus=res.cpu, num_gpus=res.gpu)


def _record(tracker: Tracker, store: Store, run_id: str, marker: Path, out: ModelMetricOutput) -> None:
    """Log a model-metric output (values, curve plots, artifacts) on its run, then mark it done for resume."""
    from raysweep.pipeline.metric_logging import log_latent_metrics

    log_latent_metrics(tracker, run_id, out.values, marker)
    for path in out.artifacts:
        tracker.log_artifact(run_id, path, "figures")
    store.mark_done(marker, {"metrics": sorted(out.values)})


def _model_metric_stage(study: StudySpec, ctx: TrialContext, store: Store, tracker: Tracker,
                        result: StudyResult) -> None:
    """Stage 2b: metrics that need the tokenizer itself (equivariance, distortion, iFID), one Ray task each."""
    import ray

    from raysweep.pipeline.model_metric_stage import MODEL_METRIC_DIR, run_model_metrics

    names = _metric_names(study, "tokenizer")
    if not names:
        return
    t0 = time.perf_counter()
    task = _remote(run_model_metrics, study)
    for i, tok in enumerate(result.tokenizers):
        marker = store.tokenizer(tok["key"]) / MODEL_METRIC_DIR
        if store.result(marker) is not None:
            continue
        _log(f"stage 2: model metrics {i + 1}/{len(result.tokenizers)} ({tok['id']}): {', '.join(names)}")
        out = ray.get(task.remote(ctx, tok["key"], names, {n: study.metrics.params.get(n, {}) for n in names}))
        _record(tracker, store, tok["run_id"], marker, out)
    result.seconds["model_metrics"] = time.perf_counter() - t0


def _diffusion_fisher_stage(study: StudySpec, ctx: TrialContext, store: Store, tracker: Tracker,
                            result: StudyResult) -> None:
    """After stage 3: FI/FIR/mmse of each trained diffusion model's velocity field, on its diffusion run."""
    import ray

    from raysweep.pipeline.model_metric_stage import run_diffusion_fisher

    names = _metric_names(study, "diffusion")
    if not names:
        return
    t0 = time.perf_counter()
    task = _remote(run_diffusion_fisher, study)
    for p in _diffusion_payloads(study, ctx, result):
        out_dir = store.diffusion(p["key"])
        done, marker = store.result(out_dir), out_dir / "fisher"
        if done is None or store.result(marker) is not None:
            continue
        _log(f"stage 3: velocity Fisher of {p['id']}")
        out = ray.get(task.remote(ctx, p["key"], p["tokenizer"]["key"], study.metrics.params.get(names[0], {})))
        _record(tracker, store, done["run_id"], marker, out)
    result.seconds["diffusion_fisher"] = time.perf_counter() - t0


def _diffusion_payloads(study: StudySpec, ctx: TrialContext, result: StudyResult) -> list[dict[str, Any]]:
    return [diffusion_payload(trial, seed, tok, study.evaluation, ctx)
            for tok in result.tokenizers for trial in study.diffusion_trials for seed in study.diffusion_seeds]


def _diffusion_stage(study: StudySpec, ctx: TrialContext, store: Store, result: StudyResult) -> None:
    t0 = time.perf_counter()
    payloads = _diffusion_payloads(study, ctx, result)
    todo = sum(store.result(store.diffusion(p["key"])) is None for p in payloads)
    _log(f"stage 3: {len(payloads)} diffusion trials ({todo} to train)")
    summaries = run_trials("diffusion", train_diffusion_trial, payloads, study.tune_storage,
                           study.resources.diffusion.model_dump())
    result.failed += [s for s in summaries if s["error"]]
    result.diffusion = [s for s in summaries if not s["error"]]
    result.seconds["diffusion"] = time.perf_counter() - t0
