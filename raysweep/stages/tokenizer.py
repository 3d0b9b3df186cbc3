"""Stage 1: one Tune trial per tokenizer — train, score reconstruction, encode both splits to Parquet latents."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from raysweep import __version__
from raysweep.config.plan import TOKENIZER_CODE_VERSION, TokenizerJob
from raysweep.config.spec import DISPLAY_FIELDS, TokenizerTrial
from raysweep.data import pool_masks, write_latents
from raysweep.data.imageset import ImageSet
from raysweep.engine.checkpointing import report, train_with_checkpoints
from raysweep.engine.context import TrialContext, setup_worker
from raysweep.engine.executors import Task
from raysweep.engine.images import load_images
from raysweep.engine.stage import StudyRun, resources, trial_config
from raysweep.engine.store import provenance
from raysweep.features.pretrained import load_feature_encoder
from raysweep.hashing import flatten
from raysweep.nn.distributed import current_shard, is_chief
from raysweep.stages.figures import save_image_grid
from raysweep.stages.scoring import feature_network, reconstruction_scores, to_uint8
from raysweep.tokenizers import (
    GanConfig,
    TokenizerTrainer,
    build_regularizer,
    build_tokenizer,
    perceptual_distance,
    psnr,
    save_tokenizer,
)
from raysweep.tracking import Tracker
from raysweep.tracking.keys import CODE_VERSION_TAG, PACKAGE_VERSION_TAG

STAGE = "tokenizer"


def task(job: TokenizerJob, run: StudyRun) -> Task:
    """A tokenizer job as its own one-trial Tune experiment, named by its key (a re-run restores it)."""
    res = run.study.resources.tokenizer
    return Task(job.ref, "trial", train_tokenizer_trial, (trial_config(job, run.ctx),), resources(res),
                experiment=f"tokenizers-{job.key}", total_steps=job.trial.steps, workers=res.workers)


def train_tokenizer_trial(config: dict[str, Any]) -> None:
    """Tune function trainable. Idempotent: a finished tokenizer reports its stored result and returns."""
    job: TokenizerJob = config["job"]
    ctx: TrialContext = config["ctx"]
    trial, key = job.trial, job.key
    out = ctx.store.tokenizer(key)
    done = ctx.store.result(out)
    if done is not None:
        report(done["metrics"])
        return
    device = setup_worker(ctx)
    if not is_chief():  # a data-parallel rank > 0 only trains, in step with rank 0
        _fit(trial, ctx, None, None, device)
        report({})  # meets rank 0's final report
        return
    tracker = Tracker(ctx.tracking_uri, ctx.experiment)
    run_id = tracker.open_run(job.id, STAGE, key, parent_id=ctx.study_run_id,
                              tags={**trial.tags(),
                                    CODE_VERSION_TAG: TOKENIZER_CODE_VERSION, PACKAGE_VERSION_TAG: __version__},
                              params=flatten(trial.model_dump(exclude=set(DISPLAY_FIELDS) - {"id"})))
    try:
        metrics = _train_and_encode(trial, key, ctx, tracker, run_id, device)
    except Exception as err:
        tracker.finish(run_id, "FAILED", reason=f"{type(err).__name__}: {err}")
        raise
    ctx.store.mark_done(out, {"metrics": metrics, "run_id": run_id, "id": trial.id,
                              **provenance(job.record())})
    tracker.finish(run_id)
    report(metrics)


def _feature_fn(trial: TokenizerTrial, ctx: TrialContext, device: torch.device) -> Any:
    """Patch tokens of the regularizer's feature network (`params.encoder`, default the study's domain net)."""
    name = trial.params.get("encoder", "domain")
    if name == "domain":
        net = copy.deepcopy(feature_network(ctx).model).to(device)  # the cached scorer stays on the CPU
    else:
        net = load_feature_encoder(name).to(device).eval()
    return lambda images: net.patch_tokens(images)


def _objective(trial: TokenizerTrial, ctx: TrialContext, device: torch.device) -> dict[str, Any]:
    """The paper's eq. 12 terms beyond L1 + KL: LPIPS (or its domain-net fallback) and the adaptive PatchGAN."""
    terms: dict[str, Any] = {}
    if trial.perceptual_weight > 0:
        domain = feature_network(ctx).model
        terms["perceptual_weight"] = trial.perceptual_weight
        terms["perceptual_fn"] = perceptual_distance(trial.lpips_weights, domain).to(device)
    if trial.gan_weight > 0:
        terms["gan"] = GanConfig(trial.gan_weight, trial.gan_start, trial.gan_channels)
    return terms


def _fit(trial: TokenizerTrial, ctx: TrialContext, tracker: Tracker | None, run_id: str | None,
         device: torch.device) -> tuple[TokenizerTrainer, ImageSet, torch.Tensor]:
    """Train the tokenizer with checkpoints; on every rank of a data-parallel trial (tracker: rank 0's).
    Returns the trainer, the train split and its float images."""
    torch.manual_seed(trial.seed)
    model = build_tokenizer(trial.architecture, trial.latent, ctx.image_size).to(device)
    regularizer = build_regularizer(trial.regularizer, trial.params)
    feature_fn = _feature_fn(trial, ctx, device) if regularizer.needs_features else None
    trainer = TokenizerTrainer(model, regularizer, lr=trial.lr, weight_decay=trial.weight_decay,
                               batch_size=trial.batch_size, seed=trial.seed, feature_fn=feature_fn,
                               kl_weight=trial.kl_weight, reg_weight=trial.reg_weight, shard=current_shard(),
                               **_objective(trial, ctx, device))
    train = load_images(ctx.root, ctx.dataset_key, "train")
    x_train = train.as_float()
    train_with_checkpoints(
        trainer, lambda n, on_log: trainer.fit(x_train, n, trial.batch_size, on_log=on_log),
        trial.steps, ctx.log_every, tracker, run_id)
    return trainer, train, x_train


def _train_and_encode(trial: TokenizerTrial, key: str, ctx: TrialContext, tracker: Tracker, run_id: str,
                      device: torch.device) -> dict[str, float]:
    if trial.id is None:  # the loader names every trial; its latents carry the name
        raise ValueError(f"tokenizer trial {key} has no id")
    trainer, train, x_train = _fit(trial, ctx, tracker, run_id, device)
    val = load_images(ctx.root, ctx.dataset_key, "val")

    out = ctx.store.tokenizer(key)
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(trainer.model, ctx.store.tokenizer_file(key), architecture=trial.architecture, latent=trial.latent,
                   image_size=ctx.image_size)
    x_val = val.as_float()
    recon = trainer.reconstruct(x_val, batch_size=256)
    scores, card = reconstruction_scores(ctx.store, ctx.dataset_key, feature_network(ctx).spec, to_uint8(recon))
    metrics = {"recon/psnr": float(psnr(x_val, recon)), "recon/rfid": scores["rfid"]}
    tracker.log_metrics(run_id, metrics, step=trainer.step)
    tracker.log_params(run_id, card.params())
    tracker.set_tags(run_id, {"recon.feature_network": ctx.feature_network, **card.tags()})
    grid = save_image_grid(np.concatenate([val.images[:16], to_uint8(recon[:16])]), out / "reconstructions.png",
                           nrow=16)
    tracker.log_artifact(run_id, grid, "figures")

    for split, images, x in (("train", train, x_train), ("val", val, x_val)):
        latents = trainer.encode(x, batch_size=256).numpy()
        masks = None if images.masks is None else pool_masks(images.masks, latents.shape[-2:])
        write_latents(ctx.store.latents(key, split), latents, images.labels, fg_masks=masks,
                      tokenizer_id=trial.id, extra_metadata={"raysweep.tokenizer_key": key, "split": split})
    return metrics
