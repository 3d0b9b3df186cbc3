"""Stage 3: one Tune trial per tokenizer x backbone x seed — train flow matching on standardised latents,
sample with the Euler ODE at every CFG scale, decode with the tokenizer, score with torch-fidelity."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from raysweep.config.hashing import config_hash, flatten
from raysweep.config.spec import DiffusionTrial, EvaluationSpec
from raysweep.data import LatentMeta, latent_files, read_latents
from raysweep.diffusion import DiffusionTrainer, build_backbone, efficiency, euler_sample, length_ratios, straightness
from raysweep.pipeline.checkpointing import report, train_with_checkpoints
from raysweep.pipeline.context import TrialContext, setup_worker
from raysweep.pipeline.figures import save_image_grid
from raysweep.pipeline.images import load_images
from raysweep.pipeline.scoring import feature_network, to_uint8
from raysweep.pipeline.tokenizer_stage import TOKENIZER_FILE
from raysweep.tokenizers import load_tokenizer
from raysweep.tracking import Tracker

STAGE = "diffusion"


def cfg_name(scale: float) -> str:
    return f"cfg{scale:g}"


def diffusion_payload(trial: DiffusionTrial, seed: int, tokenizer: dict[str, Any], evaluation: EvaluationSpec,
                      ctx: TrialContext) -> dict[str, Any]:
    """`tokenizer` = {"id", "key", "run_id"} of a finished tokenizer trial."""
    key = config_hash({"diffusion": trial.key(), "seed": seed, "tokenizer": tokenizer["key"],
                       "evaluation": evaluation.model_dump()})
    return {"id": f"{tokenizer['id']}/{trial.backbone}/{seed}", "key": key, "trial": trial.model_dump(),
            "seed": seed, "tokenizer": tokenizer, "evaluation": evaluation.model_dump(), "ctx": ctx.to_dict()}


def train_diffusion_trial(config: dict[str, Any]) -> None:
    """Tune function trainable; idempotent like the tokenizer trial."""
    payload = config["payload"]
    ctx = TrialContext(**payload["ctx"])
    key = payload["key"]
    out = ctx.store.diffusion(key)
    done = ctx.store.result(out)
    if done is not None:
        report(done["metrics"])
        return
    setup_worker(ctx)
    trial = DiffusionTrial(**payload["trial"])
    tok = payload["tokenizer"]
    tracker = Tracker(ctx.tracking_uri, ctx.experiment)
    run_id = tracker.open_run(
        f"diffusion/{trial.backbone}/{payload['seed']}", STAGE, key, parent_id=tok["run_id"],
        tags={"tokenizer_id": tok["id"], "backbone": trial.backbone, "seed": payload["seed"]},
        params={**flatten(trial.model_dump()), "seed": payload["seed"], "tokenizer_id": tok["id"],
                **flatten(payload["evaluation"], "eval")})
    try:
        metrics = _train_and_evaluate(trial, payload, ctx, tracker, run_id)
    except Exception as err:
        tracker.finish(run_id, "FAILED", reason=f"{type(err).__name__}: {err}")
        raise
    ctx.store.mark_done(out, {"metrics": metrics, "run_id": run_id, "id": payload["id"]})
    tracker.finish(run_id)
    report(metrics)


def _train_and_evaluate(trial: DiffusionTrial, payload: dict[str, Any], ctx: TrialContext, tracker: Tracker,
                        run_id: str) -> dict[str, float]:
    seed = payload["seed"]
    tok_key = payload["tokenizer"]["key"]
    evaluation = EvaluationSpec(**payload["evaluation"])
    torch.manual_seed(seed)
    batch, meta = read_latents(latent_files(ctx.store.latents(tok_key, "train")))  # checks the norm hash
    z = torch.from_numpy(meta.standardise(batch.latent))  # (N, C, H, W), what the diffusion model sees
    y = torch.from_numpy(batch.label.astype(np.int64))
    c, h, _ = meta.shape
    model = build_backbone(trial.backbone, in_channels=c, input_size=h, num_classes=ctx.num_classes,
                           patch_size=trial.patch_size, label_dropout=trial.label_dropout)
    trainer = DiffusionTrainer(model, lr=trial.lr, beta2=trial.beta2, weight_decay=trial.weight_decay,
                               ema_decay=trial.ema_decay, timestep_sampler=trial.timestep_sampler, loss=trial.loss,
                               seed=seed, grad_clip=trial.grad_clip)
    train_with_checkpoints(trainer, lambda n, on_log: trainer.fit(z, y, n, trial.batch_size, on_log=on_log),
                           trial.steps, ctx.log_every, tracker, run_id)

    decoder = load_tokenizer(ctx.store.tokenizer(tok_key) / TOKENIZER_FILE).eval()
    reference = load_images(ctx.root, ctx.dataset_key, "val").images
    scorer = feature_network(ctx)
    gen = torch.Generator().manual_seed(10_000 + seed)
    noise = torch.randn((evaluation.num_samples, c, h, h), generator=gen)
    labels = torch.arange(evaluation.num_samples) % ctx.num_classes  # class-balanced
    metrics: dict[str, float] = {}
    out = ctx.store.diffusion(payload["key"])
    for scale in evaluation.cfg_scales:
        images = _sample_and_decode(trainer.ema, decoder, noise, labels, scale, evaluation, meta)
        scores = scorer.score(images, reference, metrics=("fid", "isc"))
        metrics[f"gen/{cfg_name(scale)}/gfid"] = scores["fid"]
        metrics[f"gen/{cfg_name(scale)}/is"] = scores["is_mean"]
        grid = save_image_grid(images[:64], out / f"samples_{cfg_name(scale)}.png", nrow=16)
        tracker.log_artifact(run_id, grid, "samples")
    best = min(evaluation.cfg_scales, key=lambda s: metrics[f"gen/{cfg_name(s)}/gfid"])
    metrics["gen/best/gfid"] = metrics[f"gen/{cfg_name(best)}/gfid"]
    metrics["gen/best/cfg_scale"] = best
    trajectory, ratios = _trajectory_metrics(trainer.ema, noise, labels, evaluation)
    metrics.update(trajectory)
    tracker.log_metrics(run_id, metrics, step=trainer.step)
    tracker.log_history(run_id, [(i, {"traj/length_ratio": float(r)}) for i, r in enumerate(ratios)])
    tracker.set_tags(run_id, {"gen.feature_network": ctx.feature_network, "gen.best_cfg": best})
    return metrics


@torch.no_grad()
def _sample_and_decode(model: torch.nn.Module, decoder: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor,
                       scale: float, evaluation: EvaluationSpec, meta: LatentMeta) -> np.ndarray:
    """Euler ODE in standardised latent space, de-standardise, decode; in batches. -> uint8 [N,3,H,W]."""
    chunks = []
    for i in range(0, len(noise), evaluation.batch_size):
        result = euler_sample(model, noise[i:i + evaluation.batch_size], labels[i:i + evaluation.batch_size],
                              steps=evaluation.sampling_steps, cfg_scale=scale,
                              guidance_interval=evaluation.guidance_interval)
        chunks.append(to_uint8(decoder.decode(torch.from_numpy(meta.unstandardise(result.x1.numpy())))))
    return np.concatenate(chunks)


@torch.no_grad()
def _trajectory_metrics(model: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor,
                        evaluation: EvaluationSpec) -> tuple[dict[str, float], np.ndarray]:
    """Straightness, efficiency and per-segment length ratios of the plain (unguided) ODE, METRICS.md §9.
    The ratios go to MLflow as the history of `traj/length_ratio` (step = segment), i.e. a curve per run."""
    n = evaluation.trajectory_samples
    result = euler_sample(model, noise[:n], labels[:n], steps=evaluation.sampling_steps, cfg_scale=1.0,
                          record_trajectory=True)
    traj = result.trajectory
    scalars = {"traj/straightness": float(straightness(traj)), "traj/efficiency": float(efficiency(traj))}
    return scalars, np.asarray(length_ratios(traj))
