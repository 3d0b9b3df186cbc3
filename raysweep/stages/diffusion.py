"""Stage 3: one Tune trial per tokenizer x backbone x seed — train flow matching on standardised latents,
sample with the Euler ODE at no CFG and at every CFG scale, decode with the tokenizer, score from features against
cached reference statistics (gFID, IS, FD per network, FDr, PRC), under an evaluation card. The sampling and scoring
primitives are `stages/generation.py`; this module is the Tune trial around them.

Under multi-fidelity gFID (`DiffusionJob.tiers`, a trial of an ASHA cohort) the trial also scores its
best-CFG gFID with `cheap_samples` samples at each cheap rung (logged as `tier/rung<r>/gfid`, reported to Tune as
`tier/gfid`), and its full evaluation happens at the last checkpoint, inside that checkpoint's report: ASHA stops
every trial at `max_t`, so nothing may follow that report. A trial ASHA stops earlier is recorded by
`settle_stopped_trial`. The cheap tier samples with its own noise and never touches the trainer's generator, so a
trial that reaches the full tier trains exactly the model of the same trial without fidelity; its training key
differs by what it measured while training (its rungs, where the other measures its convergence curve: both are
what `DiffusionJob.curve` / `tiers` say, never the study's settings read again).

A run whose training equals a finished run's but for more steps continues that run from its final checkpoint
(`engine/continuation.py`): the longer run is the shorter one continued, bit-exact.

A run is stored under its training key and finished when its result holds its evaluation key: a trial whose model
is saved (`velocity_model.pt`, written once training ends) but scored under other evaluation settings is scored
again from that model, on the same MLflow run, and never retrained; the evaluation settings and key are run tags,
which a re-score updates (params cannot change once logged)."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raysweep import __version__
from raysweep.config.plan import DIFFUSION_CODE_VERSION, DiffusionJob, scored_under
from raysweep.config.spec import EvaluationSpec
from raysweep.config.tiers import Tiers, checkpoint_count
from raysweep.data import LatentBatch, LatentMeta, latent_files, read_latents
from raysweep.data.latents import LatentDataError
from raysweep.diffusion import DiffusionTrainer, build_backbone
from raysweep.diffusion.velocity_model import load_velocity_model, save_velocity_model
from raysweep.engine.checkpointing import report, train_with_checkpoints
from raysweep.engine.context import TrialContext, setup_worker
from raysweep.engine.continuation import CONTINUED_FROM, TRAINING_HISTORY, find_continuation
from raysweep.engine.executors import Task
from raysweep.engine.stage import StudyRun, resources
from raysweep.engine.store import STOPPED_RESULT, Store, provenance
from raysweep.engine.tune import Cohort
from raysweep.features import EvalCard
from raysweep.hashing import config_hash, flatten
from raysweep.nn.distributed import current_shard, in_train_worker, is_chief
from raysweep.search.fidelity import asha_scheduler
from raysweep.stages.figures import save_image_grid
from raysweep.stages.generation import (
    NO_CFG,
    cfg_views,
    run_card,
    sample_and_decode,
    sampling_noise,
    trajectory_metrics,
)
from raysweep.stages.scoring import GenerationScorer, extra_scorers, feature_network, save_cfg_curve
from raysweep.tokenizers import load_tokenizer
from raysweep.tracking import Tracker
from raysweep.tracking.keys import (
    BEST_CFG_SCALE,
    BEST_GFID,
    CHECKPOINT_GFID,
    CODE_VERSION_TAG,
    CONTINUED_TAG,
    EVALUATION_KEY_TAG,
    EVALUATION_TAG_PREFIX,
    FULL_TIER,
    PACKAGE_VERSION_TAG,
    STOPPED,
    TIER_GFID,
    TIER_RUNG,
    TIER_TAG,
    cfg_view,
    sampler_gfid_key,
    stopped_reason,
    tier_gfid_key,
)

STAGE = "diffusion"
TOKENIZER_KEY = "raysweep.tokenizer_key"  # latent metadata written by the tokenizer stage
Score = Callable[[DiffusionTrainer, LatentMeta], dict[str, float]]  # a checkpoint's extra report values


INPUT = "input"  # the key of a diffusion trial's Tune config: its `DiffusionTrialInput`


@dataclass(frozen=True)
class DiffusionTrialInput:
    """What a diffusion trial runs on, typed, in its Tune config (Tune pickles it with the experiment; a restore is
    given it again): the job (with what it measures while training: its curve, or its ASHA rungs under
    multi-fidelity gFID), its tokenizer's MLflow run (the trial run's parent), the study's evaluation settings, the
    trials' context."""

    job: DiffusionJob
    tokenizer_run_id: str
    evaluation: EvaluationSpec
    ctx: TrialContext

    def config(self) -> dict[str, Any]:
        """The Tune config `train_diffusion_trial` reads it from."""
        return {INPUT: self}


def evaluation_tags(job: DiffusionJob, evaluation: EvaluationSpec, card: EvalCard) -> dict[str, Any]:
    """How a run was (last) scored, as tags a re-score updates: the evaluation settings and key, the card."""
    return {**card.tags(), **card.params(), EVALUATION_KEY_TAG: job.evaluation_key,
            **{f"{EVALUATION_TAG_PREFIX}{k}": v for k, v in flatten(evaluation.model_dump()).items()}}


def diffusion_result(job: DiffusionJob, run_id: str, metrics: dict[str, float], **extra: Any) -> dict[str, Any]:
    """A diffusion run's store result, with its training and evaluation inputs."""
    return {"metrics": metrics, "run_id": run_id, "id": job.id, **provenance(job.record()), **extra}


def train_diffusion_trial(config: dict[str, Any]) -> None:
    """Tune function trainable (`config`: `DiffusionTrialInput.config()`); idempotent like the tokenizer trial."""
    trial_input: DiffusionTrialInput = config[INPUT]
    job, ctx = trial_input.job, trial_input.ctx
    tiers = job.tiers
    trial, key = job.trial, job.key
    out = ctx.store.diffusion(key)
    found = ctx.store.result(out)
    if found is not None and scored_under(found, job.evaluation_key):  # under ASHA every report: its metric
        report({**found["metrics"], TIER_GFID: found["metrics"].get(BEST_GFID, np.nan)} if tiers else found["metrics"])
        return
    device = setup_worker(ctx)
    trained = ctx.store.velocity_model_file(key).is_file()  # saved after training: scored again, never retrained
    if not is_chief():  # a data-parallel rank > 0 only trains, in step with rank 0
        if not trained:
            _fit(job, ctx, None, None, device)
        report({})  # meets rank 0's final report
        return
    evaluation = trial_input.evaluation
    extras = extra_scorers(ctx.store, ctx.dataset_key, evaluation.scorers, ctx.feature_network)
    scorer = GenerationScorer(ctx.store, ctx.dataset_key, feature_network(ctx).spec, evaluation.num_samples,
                              job.seed, extras.networks)
    card = run_card(scorer, ctx.dataset_key, evaluation, job.seed, device, extras)
    start = None if trained or in_train_worker() else find_continuation(job, ctx.store, ctx.log_every)
    continued = start.record() if start is not None else (found or {}).get(CONTINUED_FROM)
    tracker = Tracker(ctx.tracking_uri, ctx.experiment)
    run_id = tracker.open_run(
        job.id, STAGE, key, parent_id=trial_input.tokenizer_run_id,  # named by its study id, found by its tags
        tags={"tokenizer_id": job.tokenizer.id, "backbone": trial.backbone, "seed": job.seed,
              CODE_VERSION_TAG: DIFFUSION_CODE_VERSION, PACKAGE_VERSION_TAG: __version__},
        params={**flatten(trial.model_dump()), "seed": job.seed, "tokenizer_id": job.tokenizer.id})

    def evaluate(model: torch.nn.Module, step: int, meta: LatentMeta) -> dict[str, float]:
        metrics = _evaluate(model, step, meta, trial_input, scorer, tracker, run_id, device)
        tracker.set_tags(run_id, evaluation_tags(job, evaluation, card))
        if tiers is not None:
            tracker.log_metrics(run_id, {TIER_RUNG: len(tiers.rungs)}, step=step)
            tracker.set_tags(run_id, {TIER_TAG: FULL_TIER})
        ctx.store.mark_done(out, diffusion_result(job, run_id, metrics,
                                                  **({CONTINUED_FROM: continued} if continued else {})))
        tracker.finish(run_id)
        return metrics

    def trained_and_scored(trainer: DiffusionTrainer, meta: LatentMeta) -> dict[str, float]:
        c, h, _ = meta.shape
        save_velocity_model(ctx.store.velocity_model_file(key), trainer.ema,  # for the velocity Fisher, re-scores
                            {"name": trial.backbone, "in_channels": c, "input_size": h,
                             "num_classes": ctx.num_classes, "patch_size": trial.patch_size,
                             "label_dropout": trial.label_dropout})
        return evaluate(trainer.ema, trainer.step, meta)

    try:
        if trained:  # the evaluation changed: the saved model is scored again, never retrained
            metrics = evaluate(load_velocity_model(ctx.store.velocity_model_file(key)).to(device), trial.steps,
                               load_latents(ctx.store, job.tokenizer.key, "train")[1])
        elif tiers is not None:  # evaluated at the last checkpoint (see the module docstring)
            score = _tier_scorer(tiers, trial_input, tracker, run_id, device, trained_and_scored)
            _fit(job, ctx, tracker, run_id, device, score)
            return
        else:
            if start is not None:  # a longer run of a finished one: its training history, then its state
                tracker.copy_history(start.run_id, run_id, start.steps, TRAINING_HISTORY)
                tracker.set_tags(run_id, {CONTINUED_TAG: start.run_id})
            curve = _checkpoint_scorer(trial_input, tracker, run_id, device)
            trainer, meta = _fit(job, ctx, tracker, run_id, device, curve,
                                 None if start is None else start.state_file)
            metrics = trained_and_scored(trainer, meta)
    except Exception as err:
        tracker.finish(run_id, "FAILED", reason=f"{type(err).__name__}: {err}")
        raise
    report({**metrics, TIER_GFID: metrics[BEST_GFID]} if tiers else metrics)


def _tier_scorer(tiers: Tiers, trial_input: DiffusionTrialInput, tracker: Tracker, run_id: str, device: torch.device,
                 evaluate: Score) -> Score:
    """What a trial under ASHA adds to each checkpoint's report: NaN off the rungs, the cheap tier's best-CFG gFID
    (also logged as `tier/rung<r>/gfid`) at a cheap rung, the full evaluation at the last checkpoint."""
    ctx, scorer = trial_input.ctx, None

    def score(trainer: DiffusionTrainer, meta: LatentMeta) -> dict[str, float]:
        nonlocal scorer
        rung = tiers.rung(checkpoint_count(trainer.step, ctx.log_every))
        if rung is None:
            return {TIER_GFID: np.nan}
        if rung == len(tiers.rungs):
            metrics = evaluate(trainer, meta)
            return {**metrics, TIER_GFID: metrics[BEST_GFID]}
        scorer = scorer or GenerationScorer(ctx.store, ctx.dataset_key, feature_network(ctx).spec,
                                            tiers.cheap_samples, trial_input.job.seed)
        gfid = _cheap_gfid(trainer.ema, meta, scorer, tiers.cheap_samples, trial_input, device)
        tracker.log_metrics(run_id, {tier_gfid_key(rung): gfid, TIER_RUNG: rung}, step=trainer.step)
        return {TIER_GFID: gfid}

    return score


def _checkpoint_scorer(trial_input: DiffusionTrialInput, tracker: Tracker, run_id: str, device: torch.device
                       ) -> Score | None:
    """The convergence curve of a run outside ASHA (`DiffusionJob.curve`): its cheap gFID at every checkpoint, logged
    as `CHECKPOINT_GFID` at the training step (ASHA's trials have their rungs' `tier/rung<r>/gfid` instead). None
    when switched off."""
    curve, ctx = trial_input.job.curve, trial_input.ctx
    if curve is None:
        return None
    n = curve.samples
    scorer: GenerationScorer | None = None

    def score(trainer: DiffusionTrainer, meta: LatentMeta) -> dict[str, float]:
        nonlocal scorer
        scorer = scorer or GenerationScorer(ctx.store, ctx.dataset_key, feature_network(ctx).spec, n,
                                            trial_input.job.seed)
        gfid = _cheap_gfid(trainer.ema, meta, scorer, n, trial_input, device)
        tracker.log_metrics(run_id, {CHECKPOINT_GFID: gfid}, step=trainer.step)
        return {}

    return score


def _cheap_gfid(model: torch.nn.Module, meta: LatentMeta, scorer: GenerationScorer, n: int,
                trial_input: DiffusionTrialInput, device: torch.device) -> float:
    """The best-CFG gFID of the run's first `n` samples: the cheap tier's score and the convergence curve's."""
    evaluation, ctx = trial_input.evaluation, trial_input.ctx
    decoder = load_tokenizer(ctx.store.tokenizer_file(trial_input.job.tokenizer.key)).eval().to(device)
    noise, labels = sampling_noise(max(n, evaluation.num_samples), meta, trial_input.job.seed, ctx.num_classes)
    return min(scorer.score(sample_and_decode(model, decoder, noise[:n], labels[:n], s, evaluation, meta))["gfid"]
               for s in evaluation.cfg_scales)


def tracked_rungs(tracking_uri: str, experiment: str, keys: dict[str, str], rungs: tuple[int, ...]
                  ) -> dict[str, dict[int, float]]:
    """Job id -> {rung checkpoint: cheap-tier gFID} that the runs of these jobs (id -> key) logged so far: what ASHA
    had recorded before a restart (`search.fidelity.asha_scheduler`)."""
    tracker, out = Tracker(tracking_uri, experiment), {}
    for job_id, key in keys.items():
        run = tracker.find_run(STAGE, key)
        metrics = Tracker.metrics_of(run) if run is not None else {}
        out[job_id] = {rungs[r - 1]: metrics[tier_gfid_key(r)] for r in range(1, len(rungs))
                       if tier_gfid_key(r) in metrics}
    return out


def settle_stopped_trial(config: dict[str, Any], result: dict[str, Any]) -> None:
    """After a cohort's experiment: a trial that has no store result was stopped by ASHA (one that reached the full
    tier wrote its own). Record it as a finished job with that outcome: its store result (tier metrics only, never
    gen/...) and its MLflow run, FINISHED with the tag `raysweep.tier: stopped`."""
    trial_input: DiffusionTrialInput = config[INPUT]
    job, ctx = trial_input.job, trial_input.ctx
    tiers = job.tiers
    out = ctx.store.diffusion(job.key)
    if ctx.store.result(out) is not None:
        return
    assert tiers is not None
    rung = tiers.rung(int(result["training_iteration"]))
    if rung is None:
        raise RuntimeError(f"{job.id}: Tune ended it at checkpoint {result['training_iteration']}, "
                           f"not at one of its rungs {list(tiers.rungs)}")
    tracker = Tracker(ctx.tracking_uri, ctx.experiment)
    found = tracker.find_run(STAGE, job.key)
    if found is None:
        raise RuntimeError(f"{job.id}: stopped by Tune, but its MLflow run ({STAGE} {job.key}) is gone")
    run_id = found.info.run_id
    metrics = {tier_gfid_key(rung): float(result[TIER_GFID]), TIER_RUNG: rung}
    tracker.set_tags(run_id, {TIER_TAG: STOPPED})
    ctx.store.mark_done(out, diffusion_result(job, run_id, metrics,
                                     **{STOPPED_RESULT: {"rung": rung, "reason": stopped_reason(rung)}}))
    tracker.finish(run_id)


def load_latents(store: Store, tokenizer_key: str, split: str) -> tuple[LatentBatch, LatentMeta]:
    """The latents a trial trains on and decodes with; LatentDataError for stale normalisation (the stats do not
    match their hash) or latents written by another tokenizer than the one that will decode them."""
    batch, meta = read_latents(latent_files(store.latents(tokenizer_key, split)))  # checks the norm hash
    written_by = meta.extra.get(TOKENIZER_KEY)
    if written_by != tokenizer_key:
        raise LatentDataError(f"{store.latents(tokenizer_key, split)}: metadata '{TOKENIZER_KEY}' is "
                              f"{written_by!r}, expected {tokenizer_key!r}: stale latents; re-encode them")
    return batch, meta


def _fit(job: DiffusionJob, ctx: TrialContext, tracker: Tracker | None, run_id: str | None, device: torch.device,
         score: Score | None = None, start: Path | None = None) -> tuple[DiffusionTrainer, LatentMeta]:
    """Train the trial's backbone with checkpoints; on every rank of a data-parallel trial (tracker: rank 0's).
    `score(trainer, meta)` adds its values to each checkpoint's report (multi-fidelity gFID); `start`: the state
    of a shorter run this one continues (`engine/continuation.py`)."""
    trial = job.trial
    torch.manual_seed(job.seed)
    batch, meta = load_latents(ctx.store, job.tokenizer.key, "train")
    z = torch.from_numpy(meta.standardise(batch.latent))  # (N, C, H, W), what the diffusion model sees
    y = torch.from_numpy(batch.label.astype(np.int64))
    c, h, _ = meta.shape
    model = build_backbone(trial.backbone, in_channels=c, input_size=h, num_classes=ctx.num_classes,
                           patch_size=trial.patch_size, label_dropout=trial.label_dropout).to(device)
    trainer = DiffusionTrainer(model, seed=job.seed, shard=current_shard(), **trial.trainer_kwargs())
    train_with_checkpoints(trainer, lambda n, on_log: trainer.fit(z, y, n, trial.batch_size, on_log=on_log),
                           trial.steps, ctx.log_every, tracker, run_id,
                           score=None if score is None else lambda: score(trainer, meta), start=start)
    return trainer, meta


def _evaluate(model: torch.nn.Module, step: int, meta: LatentMeta, trial_input: DiffusionTrialInput,
              scorer: GenerationScorer, tracker: Tracker, run_id: str, device: torch.device) -> dict[str, float]:
    """Sample the trained (EMA) `model` at every CFG scale, score, log on the run at training step `step`."""
    evaluation, ctx = trial_input.evaluation, trial_input.ctx
    out = ctx.store.diffusion(trial_input.job.key)
    decoder = load_tokenizer(ctx.store.tokenizer_file(trial_input.job.tokenizer.key)).eval().to(device)
    noise, labels = sampling_noise(evaluation.num_samples, meta, trial_input.job.seed, ctx.num_classes)
    scores: dict[float, dict[str, float]] = {}
    for scale in sorted({NO_CFG, *evaluation.cfg_scales}):  # each scale sampled, decoded, featurised once
        images = sample_and_decode(model, decoder, noise, labels, scale, evaluation, meta)
        scores[scale] = scorer.score(images)
        grid = save_image_grid(images[:64], out / f"samples_{cfg_view(scale)}.png", nrow=16)
        tracker.log_artifact(run_id, grid, "samples")
    metrics = cfg_views(scores, evaluation.cfg_scales)
    best = metrics[BEST_CFG_SCALE]
    for variant in evaluation.sampler_check:  # the same noise and labels at the best scale, another solver
        images = sample_and_decode(model, decoder, noise, labels, best, evaluation, meta, variant)
        metrics[sampler_gfid_key(variant.method, variant.steps)] = scorer.score(images)["gfid"]
    curve = save_cfg_curve({s: scores[s]["gfid"] for s in evaluation.cfg_scales}, best, out / "cfg_curve.png")
    tracker.log_artifact(run_id, curve, "figures")
    trajectory, ratios = trajectory_metrics(model, noise, labels, evaluation)
    metrics.update(trajectory)
    tracker.log_metrics(run_id, metrics, step=step)
    tracker.log_history(run_id, [(i, {"traj/length_ratio": float(r)}) for i, r in enumerate(ratios)])
    tracker.set_tags(run_id, {"gen.feature_network": ctx.feature_network, "gen.best_cfg": best})
    return metrics


def task(job: DiffusionJob, run: StudyRun) -> Task:
    """A diffusion job as its own one-trial Tune experiment, or with its cohort under ASHA (multi-fidelity gFID)."""
    if run.cohort is not None and (members := run.cohort(job)):  # []: runs alone (a ladder's cheap run)
        return cohort_task(members, run)
    res = run.study.resources.diffusion
    trial_input = DiffusionTrialInput(job, run.ctx.store.run_id(job.tokenizer), run.study.evaluation, run.ctx)
    return Task(job.ref, "trial", train_diffusion_trial, (trial_input.config(),), resources(res),
                experiment=diffusion_experiment(job, run.ctx.store), total_steps=job.trial.steps,
                workers=res.workers)


def diffusion_experiment(job: DiffusionJob, store: Store) -> str:
    """The Tune experiment of a diffusion job: its training's (restored after a kill), or, once the model is saved,
    one per evaluation (a finished experiment is not run again, and a re-score must run)."""
    trained = store.velocity_model_file(job.key).is_file()
    return f"diffusion-{job.key}" + (f"-scored-{job.evaluation_key}" if trained else "")


def cohort_task(jobs: list[DiffusionJob], run: StudyRun) -> Task:
    """Diffusion jobs (one diffusion trial, several tokenizers / seeds) as one Tune experiment under ASHA, named by
    all their keys so a restarted driver restores it; jobs finished earlier (full tier or stopped) are not run
    again. ASHA starts from the rung gFIDs the jobs' runs already tracked (a restored experiment's trials)."""
    study, ctx = run.study, run.ctx
    assert study.allocation is not None and study.allocation.fidelity is not None
    spec = study.allocation.fidelity
    trial, tiers = jobs[0].trial, jobs[0].tiers  # one diffusion trial: the same rungs
    assert tiers is not None, f"{jobs[0].id}: an ASHA cohort of a job planned without tiers"
    configs = tuple(DiffusionTrialInput(j, ctx.store.run_id(j.tokenizer), study.evaluation, ctx).config()
                    for j in jobs)
    todo = tuple(i for i, j in enumerate(jobs) if ctx.store.done(j) is None)
    recorded = functools.partial(tracked_rungs, ctx.tracking_uri, ctx.experiment, {j.id: j.key for j in jobs},
                                 tiers.rungs)
    scheduler = asha_scheduler(spec, tiers.max_iterations, recorded=recorded)
    return Task(jobs[todo[0]].ref, "trial", train_diffusion_trial, (), resources(study.resources.diffusion),
                experiment=f"diffusion-cohort-{config_hash([(j.key, j.evaluation_key) for j in jobs])}",
                total_steps=trial.steps,
                cohort=Cohort(tuple(j.id for j in jobs), configs, todo, scheduler, settle_stopped_trial),
                members=tuple(jobs[i].ref for i in todo))
