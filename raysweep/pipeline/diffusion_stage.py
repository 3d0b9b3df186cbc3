"""Stage 3: one Tune trial per tokenizer x backbone x seed — train flow matching on standardised latents,
sample with the Euler ODE at no CFG and at every CFG scale, decode with the tokenizer, score from features against
cached reference statistics (gFID, IS, FD per network, FDr, PRC), under an evaluation card."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from raysweep.config.plan import diffusion_key
from raysweep.config.spec import DiffusionTrial, EvaluationSpec
from raysweep.data import LatentBatch, LatentMeta, latent_files, read_latents
from raysweep.data.latents import LatentDataError
from raysweep.diffusion import (
    DiffusionTrainer,
    SampleResult,
    build_backbone,
    efficiency,
    euler_sample,
    length_ratios,
    straightness,
)
from raysweep.diffusion.precision import backbone_autocast, sampling_precision
from raysweep.diffusion.velocity_model import save_velocity_model
from raysweep.features import EvalCard, generation_card
from raysweep.hashing import flatten
from raysweep.pipeline.checkpointing import report, train_with_checkpoints
from raysweep.pipeline.context import TrialContext, setup_worker
from raysweep.pipeline.data_parallel import current_shard, is_chief
from raysweep.pipeline.figures import save_image_grid
from raysweep.pipeline.scoring import GENERATION_REFERENCE, GenerationScorer, feature_network, save_cfg_curve, to_uint8
from raysweep.pipeline.store import Store
from raysweep.tokenizers import load_tokenizer
from raysweep.tracking import Tracker
from raysweep.tracking.keys import BEST_CFG_SCALE, BEST_VIEW, NO_CFG_VIEW, cfg_view, gen_key

STAGE = "diffusion"
NO_CFG = 1.0
SAMPLER = "euler-ode, uniform time grid"
TOKENIZER_KEY = "raysweep.tokenizer_key"  # latent metadata written by the tokenizer stage


def diffusion_payload(trial: DiffusionTrial, seed: int, tokenizer: dict[str, Any], evaluation: EvaluationSpec,
                      ctx: TrialContext) -> dict[str, Any]:
    """`tokenizer` = {"id", "key", "run_id"} of a finished tokenizer trial."""
    key = diffusion_key(trial, seed, tokenizer["key"], evaluation)
    return {"id": f"{tokenizer['id']}/{trial.backbone}/{seed}", "key": key, "trial": trial.model_dump(),
            "seed": seed, "tokenizer": tokenizer, "evaluation": evaluation.model_dump(), "ctx": ctx.to_dict()}


def run_card(scorer: GenerationScorer, dataset_key: str, evaluation: EvaluationSpec, seed: int,
             device: torch.device) -> EvalCard:
    """The card of a run sampled on `device` (its precision is `sample_latents`' on that device)."""
    return generation_card(
        scorer.primary, scorer.networks, dataset_key, GENERATION_REFERENCE, scorer.reference_size,
        evaluation.num_samples, SAMPLER, evaluation.sampling_steps, evaluation.cfg_scales,
        evaluation.guidance_interval, timestep_shift=1.0, seed=seed, precision=sampling_precision(device),
        class_balancing="round-robin labels (i % num_classes)")


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
    device = setup_worker(ctx)
    trial = DiffusionTrial(**payload["trial"])
    if not is_chief():  # a data-parallel rank > 0 only trains, in step with rank 0
        _fit(trial, payload, ctx, None, None, device)
        report({})  # meets rank 0's final report
        return
    evaluation = EvaluationSpec(**payload["evaluation"])
    tok = payload["tokenizer"]
    scorer = GenerationScorer(ctx.store, ctx.dataset_key, feature_network(ctx).spec, evaluation.num_samples,
                              payload["seed"])
    card = run_card(scorer, ctx.dataset_key, evaluation, payload["seed"], device)
    tracker = Tracker(ctx.tracking_uri, ctx.experiment)
    run_id = tracker.open_run(
        payload["id"], STAGE, key, parent_id=tok["run_id"],  # named by its study id, found by its tags
        tags={"tokenizer_id": tok["id"], "backbone": trial.backbone, "seed": payload["seed"], **card.tags()},
        params={**flatten(trial.model_dump()), "seed": payload["seed"], "tokenizer_id": tok["id"],
                **flatten(payload["evaluation"], "eval"), **card.params()})
    try:
        metrics = _train_and_evaluate(trial, evaluation, payload, ctx, scorer, tracker, run_id, device)
    except Exception as err:
        tracker.finish(run_id, "FAILED", reason=f"{type(err).__name__}: {err}")
        raise
    ctx.store.mark_done(out, {"metrics": metrics, "run_id": run_id, "id": payload["id"]})
    tracker.finish(run_id)
    report(metrics)


def load_latents(store: Store, tokenizer_key: str, split: str) -> tuple[LatentBatch, LatentMeta]:
    """The latents a trial trains on and decodes with; LatentDataError for stale normalisation (the stats do not
    match their hash) or latents written by another tokenizer than the one that will decode them."""
    batch, meta = read_latents(latent_files(store.latents(tokenizer_key, split)))  # checks the norm hash
    written_by = meta.extra.get(TOKENIZER_KEY)
    if written_by != tokenizer_key:
        raise LatentDataError(f"{store.latents(tokenizer_key, split)}: metadata '{TOKENIZER_KEY}' is "
                              f"{written_by!r}, expected {tokenizer_key!r}: stale latents; re-encode them")
    return batch, meta


def _fit(trial: DiffusionTrial, payload: dict[str, Any], ctx: TrialContext, tracker: Tracker | None,
         run_id: str | None, device: torch.device) -> tuple[DiffusionTrainer, LatentMeta]:
    """Train the trial's backbone with checkpoints; on every rank of a data-parallel trial (tracker: rank 0's)."""
    torch.manual_seed(payload["seed"])
    batch, meta = load_latents(ctx.store, payload["tokenizer"]["key"], "train")
    z = torch.from_numpy(meta.standardise(batch.latent))  # (N, C, H, W), what the diffusion model sees
    y = torch.from_numpy(batch.label.astype(np.int64))
    c, h, _ = meta.shape
    model = build_backbone(trial.backbone, in_channels=c, input_size=h, num_classes=ctx.num_classes,
                           patch_size=trial.patch_size, label_dropout=trial.label_dropout).to(device)
    trainer = DiffusionTrainer(model, seed=payload["seed"], shard=current_shard(), **trial.trainer_kwargs())
    train_with_checkpoints(trainer, lambda n, on_log: trainer.fit(z, y, n, trial.batch_size, on_log=on_log),
                           trial.steps, ctx.log_every, tracker, run_id)
    return trainer, meta


def _train_and_evaluate(trial: DiffusionTrial, evaluation: EvaluationSpec, payload: dict[str, Any],
                        ctx: TrialContext, scorer: GenerationScorer, tracker: Tracker, run_id: str,
                        device: torch.device) -> dict[str, float]:
    seed = payload["seed"]
    tok_key = payload["tokenizer"]["key"]
    trainer, meta = _fit(trial, payload, ctx, tracker, run_id, device)
    c, h, _ = meta.shape
    out = ctx.store.diffusion(payload["key"])
    save_velocity_model(ctx.store.velocity_model_file(payload["key"]), trainer.ema,  # for the velocity Fisher
                        {"name": trial.backbone, "in_channels": c, "input_size": h, "num_classes": ctx.num_classes,
                         "patch_size": trial.patch_size, "label_dropout": trial.label_dropout})

    decoder = load_tokenizer(ctx.store.tokenizer_file(tok_key)).eval().to(device)
    gen = torch.Generator().manual_seed(10_000 + seed)
    noise = torch.randn((evaluation.num_samples, c, h, h), generator=gen)
    labels = torch.arange(evaluation.num_samples) % ctx.num_classes  # class-balanced
    scores: dict[float, dict[str, float]] = {}
    for scale in sorted({NO_CFG, *evaluation.cfg_scales}):  # each scale sampled, decoded, featurised once
        images = _sample_and_decode(trainer.ema, decoder, noise, labels, scale, evaluation, meta)
        scores[scale] = scorer.score(images)
        grid = save_image_grid(images[:64], out / f"samples_{cfg_view(scale)}.png", nrow=16)
        tracker.log_artifact(run_id, grid, "samples")
    metrics = cfg_views(scores, evaluation.cfg_scales)
    best = metrics[BEST_CFG_SCALE]
    curve = save_cfg_curve({s: scores[s]["gfid"] for s in evaluation.cfg_scales}, best, out / "cfg_curve.png")
    tracker.log_artifact(run_id, curve, "figures")
    trajectory, ratios = _trajectory_metrics(trainer.ema, noise, labels, evaluation)
    metrics.update(trajectory)
    tracker.log_metrics(run_id, metrics, step=trainer.step)
    tracker.log_history(run_id, [(i, {"traj/length_ratio": float(r)}) for i, r in enumerate(ratios)])
    tracker.set_tags(run_id, {"gen.feature_network": ctx.feature_network, "gen.best_cfg": best})
    return metrics


def cfg_views(scores: dict[float, dict[str, float]], grid: list[float]) -> dict[str, float]:
    """{scale: scores} -> `gen/cfg<s>/*` for the swept grid, `gen/nocfg/*` (scale 1, sampled even when not in
    the grid), `gen/best/*` at the grid scale of lowest gFID, and `gen/best/cfg_scale`."""
    best = min(grid, key=lambda s: scores[s]["gfid"])
    views = {**{cfg_view(s): scores[s] for s in grid}, NO_CFG_VIEW: scores[NO_CFG], BEST_VIEW: scores[best]}
    metrics = {gen_key(view, name): value for view, values in views.items() for name, value in values.items()}
    metrics[BEST_CFG_SCALE] = best
    return metrics


def decode_standardised(decoder: torch.nn.Module, z: torch.Tensor, meta: LatentMeta, batch_size: int) -> torch.Tensor:
    """Standardised latents [N,C,H,W] -> de-standardised with the latents' own stats -> decoded [N,3,H,W] floats
    on the decoder's device."""
    device = next(decoder.parameters()).device
    with torch.no_grad():
        return torch.cat([decoder.decode(torch.from_numpy(meta.unstandardise(chunk.cpu().numpy())).to(device))
                          for chunk in z.split(batch_size)])


def sample_latents(model: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor, scale: float,
                   evaluation: EvaluationSpec, record_trajectory: bool = False) -> SampleResult:
    """The Euler ODE every sample of a run comes from: the backbone under `backbone_autocast` of its device (what
    the card's precision reports), the ODE state in float32."""
    with backbone_autocast(noise.device):
        return euler_sample(model, noise, labels, steps=evaluation.sampling_steps, cfg_scale=scale,
                            guidance_interval=evaluation.guidance_interval, record_trajectory=record_trajectory)


@torch.no_grad()
def _sample_and_decode(model: torch.nn.Module, decoder: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor,
                       scale: float, evaluation: EvaluationSpec, meta: LatentMeta) -> np.ndarray:
    """Euler ODE in standardised latent space, de-standardise, decode; in batches. -> uint8 [N,3,H,W]."""
    chunks = []
    device = next(model.parameters()).device
    noise, labels = noise.to(device), labels.to(device)
    for i in range(0, len(noise), evaluation.batch_size):
        result = sample_latents(model, noise[i:i + evaluation.batch_size], labels[i:i + evaluation.batch_size],
                                scale, evaluation)
        chunks.append(to_uint8(decode_standardised(decoder, result.x1, meta, evaluation.batch_size)))
    return np.concatenate(chunks)


@torch.no_grad()
def _trajectory_metrics(model: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor,
                        evaluation: EvaluationSpec) -> tuple[dict[str, float], np.ndarray]:
    """Straightness, efficiency and per-segment length ratios of the plain (unguided) ODE, METRICS.md §9.
    The ratios go to MLflow as the history of `traj/length_ratio` (step = segment), i.e. a curve per run."""
    n = evaluation.trajectory_samples
    device = next(model.parameters()).device
    result = sample_latents(model, noise[:n].to(device), labels[:n].to(device), NO_CFG, evaluation,
                            record_trajectory=True)
    traj = result.trajectory
    scalars = {"traj/straightness": float(straightness(traj)), "traj/efficiency": float(efficiency(traj))}
    return scalars, torch.as_tensor(length_ratios(traj)).cpu().numpy()
