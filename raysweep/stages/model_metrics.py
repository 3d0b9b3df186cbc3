"""Model-dependent latent metrics in the pipeline: a tokenizer's after its training (the model-metric job), and a
trained diffusion model's after its run (the diffusion-metric job).

Each job builds what its metrics may use once (`TokenizerInputs`, `DiffusionInputs`) and runs every metric through
its typed base (`TokenizerMetric.run`, `DiffusionMetric.run`); what a metric reads from them, and the files it
returns (image grids, a curves npz), are its class's business, so no metric is named here. Both run in the calling
process on CUDA when there is one (call them from a GPU task or actor to use it); the maths lives in
`raysweep.metrics.model`. They return values for `metric_logging.record_metrics` (scalars, curves with their
`_grid`) plus the files written, for MLflow.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raysweep.atomic import atomic_file
from raysweep.config.plan import DiffusionMetricJob, ModelMetricJob
from raysweep.data import latent_files, read_latent_meta, read_latents
from raysweep.data.location import is_dir
from raysweep.diffusion.velocity_model import load_velocity_model
from raysweep.engine.context import TrialContext, setup_worker, trial_device
from raysweep.engine.executors import Task
from raysweep.engine.images import load_images
from raysweep.engine.stage import StudyRun, resources
from raysweep.engine.store import MODEL_METRIC_DIR
from raysweep.metrics.base import Value
from raysweep.metrics.model import (
    Codec,
    DiffusionInputs,
    DiffusionMetric,
    ModelOutput,
    TokenizerInputs,
    TokenizerMetric,
)
from raysweep.metrics.registry import build_metric
from raysweep.stages.figures import save_image_grid
from raysweep.stages.metric_logging import record_metrics, split_values
from raysweep.stages.scoring import feature_network, to_uint8
from raysweep.tokenizers import load_tokenizer

GRID_ROW = 16  # images per row of a metric's image grid


@dataclass
class ModelMetricOutput:
    values: dict[str, Value]  # MLflow key -> float, or a curve array with its grid under `<key>_grid`
    artifacts: list[Path] = field(default_factory=list)


def tokenizer_inputs(ctx: TrialContext, tokenizer_key: str, device: torch.device, max_images: int = 64,
                     batch_size: int = 16) -> TokenizerInputs:
    """The tokenizer as a codec on `device`, its validation images, lazy readers of its latents and the study's
    FID. Latents are standardised with the validation set's statistics (the Parquet metadata), as the diffusion
    model sees them; the codec decodes them with the same."""
    tokenizer = load_tokenizer(ctx.store.tokenizer_file(tokenizer_key)).eval().requires_grad_(False).to(device)
    meta = read_latent_meta(latent_files(ctx.store.latents(tokenizer_key, "val"))[0])
    codec = Codec(lambda x: tokenizer.encode(x).mode(), tokenizer.decode,
                  torch.from_numpy(meta.channel_mean).float(), torch.from_numpy(meta.channel_std).float())
    val = load_images(ctx.root, ctx.dataset_key, "val")

    def latents(split: str) -> torch.Tensor | None:
        directory = ctx.store.latents(tokenizer_key, split)
        if not is_dir(directory):  # a Path or a pyarrow.fs URI (storage.latents)
            return None
        return torch.from_numpy(meta.standardise(read_latents(latent_files(directory))[0].latent)).to(device)

    def fid(images: torch.Tensor) -> float:
        return float(feature_network(ctx).score(to_uint8(images), val.images, metrics=("fid",))["fid"])

    return TokenizerInputs(codec, val.as_float(), latents, fid, device, max_images, batch_size)


def _written(outputs: Iterable[ModelOutput], directory: Path) -> ModelMetricOutput:
    """The metrics' values, with the files they asked for written under `directory`: image grids, and a curves npz
    (`curve key with / as _ -> [grid, values]`)."""
    out = ModelMetricOutput({})
    for result in outputs:
        out.values.update(result.values)
        for name, images in result.grids.items():
            out.artifacts.append(save_image_grid(to_uint8(images), directory / name, nrow=GRID_ROW))
        if result.curves_file is not None:
            _, curves = split_values(result.values)
            path = directory / result.curves_file
            with atomic_file(path) as tmp:
                # numpy's stub: a `**` dict's keys might include the `allow_pickle: bool` keyword
                np.savez(tmp, **{k.replace("/", "_"): np.stack([g, v])  # type: ignore[arg-type]
                                 for k, (g, v) in curves.items()})
            out.artifacts.append(path)
    return out


def run_model_metrics(ctx: TrialContext, tokenizer_key: str, names: list[str], params: dict[str, dict[str, Any]],
                      max_images: int = 64, batch_size: int = 16, device: str | None = None) -> ModelMetricOutput:
    """The named tokenizer metrics on the tokenizer's validation data (`tokenizer_inputs`); a name that is not a
    tokenizer metric raises ValueError listing those that are, before anything is loaded."""
    metrics = [build_metric(name, TokenizerMetric, **params.get(name, {})) for name in names]
    setup_worker(ctx)
    data = tokenizer_inputs(ctx, tokenizer_key, torch.device(device) if device else trial_device(), max_images,
                            batch_size)
    return _written((m.run(data) for m in metrics), ctx.store.tokenizer(tokenizer_key) / MODEL_METRIC_DIR)


def run_diffusion_metrics(ctx: TrialContext, diffusion_key: str, tokenizer_key: str, names: list[str],
                          params: dict[str, dict[str, Any]], model: torch.nn.Module | None = None,
                          batch_size: int = 256, device: str | None = None) -> ModelMetricOutput:
    """The named diffusion metrics of a trained model on the tokenizer's validation latents, standardised with the
    *training* latents' statistics (what the model was trained on). `model` defaults to the one saved under the
    run's store directory (`save_velocity_model`); the metrics' files go there too."""
    metrics = [build_metric(name, DiffusionMetric, **params.get(name, {})) for name in names]
    setup_worker(ctx)
    dev = torch.device(device) if device else trial_device()
    directory = ctx.store.diffusion(diffusion_key)
    if model is None:
        model = load_velocity_model(ctx.store.velocity_model_file(diffusion_key))
    batch, _ = read_latents(latent_files(ctx.store.latents(tokenizer_key, "val")))
    train_meta = read_latent_meta(latent_files(ctx.store.latents(tokenizer_key, "train"))[0])
    data = DiffusionInputs(torch.from_numpy(train_meta.standardise(batch.latent)),
                           torch.from_numpy(batch.label.astype(np.int64)), batch.sample_id, model.to(dev), dev,
                           batch_size)
    return _written((m.run(data) for m in metrics), directory)


def run_model_metric_job(ctx: TrialContext, job: ModelMetricJob, params: dict[str, dict[str, Any]]) -> None:
    """The entry point of a model-metric job: its metrics of the tokenizer whose marker entries are missing or
    stale, logged on the tokenizer's run."""
    from raysweep.tracking import Tracker

    names = list(job.missing(ctx.store.found(job)))
    out = run_model_metrics(ctx, job.upstream, names, params)
    run_id = ctx.store.finished(ctx.store.tokenizer(job.upstream))["run_id"]
    record_metrics(Tracker(ctx.tracking_uri, ctx.experiment), ctx.store, job, names, run_id, out.values,
                   out.artifacts)


def run_diffusion_metric_job(ctx: TrialContext, job: DiffusionMetricJob, params: dict[str, dict[str, Any]]) -> None:
    """The entry point of a diffusion-metric job: its metrics of the trained model whose marker entries are missing
    or stale, logged on the model's run."""
    from raysweep.tracking import Tracker

    names = list(job.missing(ctx.store.found(job)))
    out = run_diffusion_metrics(ctx, job.upstream, job.diffusion.tokenizer.key, names, params)
    run_id = ctx.store.finished(ctx.store.diffusion(job.upstream))["run_id"]
    record_metrics(Tracker(ctx.tracking_uri, ctx.experiment), ctx.store, job, names, run_id, out.values,
                   out.artifacts)


def task(job: ModelMetricJob, run: StudyRun) -> Task:
    return Task(job.ref, "task", run_model_metric_job, (run.ctx, job, run.study.metrics.params),
                resources(run.study.resources.metric_actor))


def diffusion_metric_task(job: DiffusionMetricJob, run: StudyRun) -> Task:
    return Task(job.ref, "task", run_diffusion_metric_job, (run.ctx, job, run.study.metrics.params),
                resources(run.study.resources.metric_actor))
