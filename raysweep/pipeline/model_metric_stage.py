"""Model-dependent latent metrics in the pipeline: the tokenizer's (equivariance, encoder distortion, iFID) after
stage 2, and FI/FIR/mmse from each trained diffusion model after stage 3.

Both run in the calling process on CUDA when there is one (call them from a GPU task or actor to use it); the
maths lives in `raysweep.metrics.model`. They return values for `metric_logging.log_latent_metrics` (scalars,
curves with their `_grid`) plus the files they wrote (npz of curves, the iFID interpolant grid) for MLflow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raysweep.atomic import atomic_file
from raysweep.config.plan import DiffusionMetricJob, ModelMetricJob
from raysweep.data import LatentMeta, latent_files, read_latent_meta, read_latents
from raysweep.data.location import is_dir
from raysweep.diffusion.velocity_model import load_velocity_model
from raysweep.metrics.base import Value
from raysweep.metrics.model import MODEL_METRICS, Codec, InterpolationFID, build_model_metric
from raysweep.pipeline.context import TrialContext, setup_worker, trial_device
from raysweep.pipeline.figures import save_image_grid
from raysweep.pipeline.images import load_images
from raysweep.pipeline.metric_logging import record_metrics, split_values
from raysweep.pipeline.scoring import feature_network, to_uint8
from raysweep.pipeline.store import MODEL_METRIC_DIR
from raysweep.tokenizers import load_tokenizer

FISHER_CURVES_FILE = "fisher_curves.npz"


@dataclass
class ModelMetricOutput:
    values: dict[str, Value]  # MLflow key -> float, or a curve array with its grid under `<key>_grid`
    artifacts: list[Path] = field(default_factory=list)


def _check_names(names: list[str], needs: str) -> None:
    wrong = [n for n in names if n not in MODEL_METRICS or MODEL_METRICS[n].needs != needs]
    if wrong:
        allowed = sorted(n for n, info in MODEL_METRICS.items() if info.needs == needs)
        raise ValueError(f"model metric(s) {', '.join(wrong)} cannot run on a {needs}; allowed: {', '.join(allowed)}")


def run_model_metrics(ctx: TrialContext, tokenizer_key: str, names: list[str], params: dict[str, dict[str, Any]],
                      max_images: int = 64, reference_images: int = 256, batch_size: int = 16,
                      device: str | None = None) -> ModelMetricOutput:
    """Tokenizer metrics on the validation split: equivariance and distortion on the first `max_images` images
    (distortion's tangents point into the first `reference_images`), iFID on every validation latent against the
    training latents (the other validation latents when there are none), scored with the study's feature
    network. Latents are standardised with the written sets' statistics (the Parquet metadata), as the diffusion
    model sees them."""
    _check_names(names, "tokenizer")
    setup_worker(ctx)
    dev = torch.device(device) if device else trial_device()
    tokenizer = load_tokenizer(ctx.store.tokenizer_file(tokenizer_key)).eval().requires_grad_(False)
    tokenizer = tokenizer.to(dev)
    val_latents, meta = read_latents(latent_files(ctx.store.latents(tokenizer_key, "val")))
    codec = Codec(lambda x: tokenizer.encode(x).mode(), tokenizer.decode,
                  torch.from_numpy(meta.channel_mean).float(), torch.from_numpy(meta.channel_std).float())
    val = load_images(ctx.root, ctx.dataset_key, "val")
    images = val.as_float()
    out = ModelMetricOutput({})
    for name in names:
        metric = build_model_metric(name, **params.get(name, {}))
        if name == "ifid":
            _interpolation_fid(ctx, tokenizer_key, metric, codec, val_latents.latent, meta, val.images, dev, out)
            continue
        state, subset = metric.init(), images[:max_images]
        for i in range(0, len(subset), batch_size):
            chunk = subset[i:i + batch_size].to(dev)
            if name == "distortion":
                state = metric.update(state, chunk, codec, images[:reference_images].to(dev))
            else:
                state = metric.update(state, chunk, codec)
        out.values.update(metric.finalize(state))
    return out


def _interpolation_fid(ctx: TrialContext, tokenizer_key: str, metric: InterpolationFID, codec: Codec,
                       val_latents: np.ndarray, meta: LatentMeta, real: np.ndarray, dev: torch.device,
                       out: ModelMetricOutput) -> None:
    """iFID of the validation latents [N,C,h,w] against the training latents (else the other validation
    latents), both standardised with the validation set's statistics (the codec's, which decodes them)."""
    queries = torch.from_numpy(meta.standardise(val_latents)).to(dev)
    train_dir = ctx.store.latents(tokenizer_key, "train")
    reference = queries
    if is_dir(train_dir):  # a Path or a pyarrow.fs URI (storage.latents)
        reference = torch.from_numpy(meta.standardise(read_latents(latent_files(train_dir))[0].latent)).to(dev)
    decoded = to_uint8(metric.interpolants(queries, reference, codec, exclude_self=reference is queries))
    out.values.update(metric.result(feature_network(ctx).score(decoded, real, metrics=("fid",))["fid"]))
    directory = ctx.store.tokenizer(tokenizer_key) / MODEL_METRIC_DIR
    out.artifacts.append(save_image_grid(decoded[:64], directory / "ifid_interpolants.png", nrow=16))


def run_diffusion_fisher(ctx: TrialContext, diffusion_key: str, tokenizer_key: str,
                         params: dict[str, Any] | None = None, model: torch.nn.Module | None = None,
                         batch_size: int = 256, device: str | None = None) -> ModelMetricOutput:
    """FI(t), FIR(t), mmse(t) of a trained diffusion model on the tokenizer's validation latents, standardised
    with the *training* latents' statistics (what the model was trained on). `model` defaults to the one saved
    under the run's store directory (`save_velocity_model`). Curves also go to `fisher_curves.npz` there."""
    setup_worker(ctx)
    dev = torch.device(device) if device else trial_device()
    directory = ctx.store.diffusion(diffusion_key)
    if model is None:
        model = load_velocity_model(ctx.store.velocity_model_file(diffusion_key))
    velocity = model.to(dev)
    batch, _ = read_latents(latent_files(ctx.store.latents(tokenizer_key, "val")))
    train_meta = read_latent_meta(latent_files(ctx.store.latents(tokenizer_key, "train"))[0])
    latents = torch.from_numpy(train_meta.standardise(batch.latent))
    labels = torch.from_numpy(batch.label.astype(np.int64))
    metric = build_model_metric("velocity_fisher", **(params or {}))
    state = metric.init()
    for i in range(0, len(latents), batch_size):
        rows = slice(i, i + batch_size)
        state = metric.update(state, latents[rows].to(dev), labels[rows].to(dev), batch.sample_id[rows], velocity)
    values = metric.finalize(state)
    _, curves = split_values(values)
    path = directory / FISHER_CURVES_FILE
    with atomic_file(path) as tmp:
        np.savez(tmp, **{k.replace("/", "_"): np.stack([g, v]) for k, (g, v) in curves.items()})
    return ModelMetricOutput(values, [path])


def run_model_metric_job(ctx: TrialContext, job: ModelMetricJob, params: dict[str, dict[str, Any]]) -> None:
    """The entry point of a model-metric job: its metrics of the tokenizer, logged on the tokenizer's run."""
    from raysweep.tracking import Tracker

    out = run_model_metrics(ctx, job.key, list(job.names), {n: params.get(n, {}) for n in job.names})
    run_id = ctx.store.result(ctx.store.tokenizer(job.key))["run_id"]
    record_metrics(Tracker(ctx.tracking_uri, ctx.experiment), ctx.store, run_id, ctx.store.marker(job), out.values,
                   out.artifacts)


def run_diffusion_metric_job(ctx: TrialContext, job: DiffusionMetricJob, params: dict[str, dict[str, Any]]) -> None:
    """The entry point of a diffusion-metric job: the velocity Fisher of the trained model, on its run."""
    from raysweep.tracking import Tracker

    out = run_diffusion_fisher(ctx, job.key, job.diffusion.tokenizer.key, params.get(job.names[0], {}))
    run_id = ctx.store.result(ctx.store.diffusion(job.key))["run_id"]
    record_metrics(Tracker(ctx.tracking_uri, ctx.experiment), ctx.store, run_id, ctx.store.marker(job), out.values,
                   out.artifacts)
