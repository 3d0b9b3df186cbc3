"""`raysweep migrate`: a store written by raysweep 0.1.0 (before complete keys, commit 8e5a5a3) moved under the
current keys, without retraining.

An old result is reused only when its key, recomputed with the old formula (`legacy_*_key`) from the current study,
matches a result in the store: a tokenizer's old key was its trial fields alone; a diffusion run's hashed its trial,
seed, old tokenizer key and evaluation; a metric job's markers lived under its run with no key of their own (a metric
is kept when every value it logs is listed in the old marker). The reused result is moved to its new key (with its
tokenizer's latents, whose footer names the key) and records the inputs the old key did not cover under
`assumed_at_migration` (`status` lists them); its MLflow run is found under the new key. `run` refuses a store that
still holds such results (`needs_migration`), so none is reused silently or retrained without being asked.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from raysweep.atomic import atomic_file
from raysweep.config.errors import ConfigError
from raysweep.config.plan import DiffusionJob, Job, MetricJob, StudyPlan, TokenizerJob
from raysweep.config.spec import EvaluationSpec, StudySpec
from raysweep.engine.store import Store
from raysweep.hashing import config_hash

ASSUMED = "assumed_at_migration"  # in a migrated result: the inputs its old key did not cover
MIGRATED_FROM = "migrated_from"  # in a migrated result: its old key
# what each old key left out (the dotted input fields of the new key)
TOKENIZER_ASSUMED: tuple[str, ...] = ("dataset", "reference", "version")
DIFFUSION_ASSUMED: tuple[str, ...] = ("version", "evaluation.scorer")
METRIC_ASSUMED = ("params", "version")
TOKENIZER_KEY_FOOTER = "raysweep.tokenizer_key"  # the latents' footer entry naming their tokenizer's key


def legacy_tokenizer_key(job: TokenizerJob) -> str:
    return job.trial.key()


# the evaluation settings 0.1.0 had: fields added since (the checkpoint curve, the sampler check) were not in its key
LEGACY_EVALUATION_FIELDS = {"sampling_steps", "cfg_scales", "guidance_interval", "num_samples", "batch_size",
                            "trajectory_samples"}


def legacy_diffusion_key(job: DiffusionJob, evaluation: EvaluationSpec) -> str:
    return config_hash({"diffusion": job.trial.key(), "seed": job.seed, "tokenizer": job.tokenizer.trial.key(),
                        "evaluation": evaluation.model_dump(include=LEGACY_EVALUATION_FIELDS)})


@dataclass(frozen=True)
class Move:
    """One old result the current study reuses: `job`'s result, found in `old`, goes to `new`."""

    job: Job
    old: Path
    new: Path
    assumed: tuple[str, ...]


def legacy_results(study: StudySpec, plan: StudyPlan, store: Store) -> list[Move]:
    """The planned tokenizers and diffusion runs unfinished under their key whose old key has a result (plan
    order: tokenizers before their diffusion runs)."""
    moves = []
    for job in plan.jobs:
        if isinstance(job, TokenizerJob):
            old, new, assumed = store.tokenizer(legacy_tokenizer_key(job)), store.tokenizer(job.key), TOKENIZER_ASSUMED
        elif isinstance(job, DiffusionJob):
            old, new = store.diffusion(legacy_diffusion_key(job, study.evaluation)), store.diffusion(job.key)
            assumed = DIFFUSION_ASSUMED
        else:
            continue
        if old != new and store.found(job) is None and Store.result(old) is not None:
            moves.append(Move(job, old, new, assumed))
    return moves


def needs_migration(study: StudySpec, plan: StudyPlan, store: Store) -> None:
    """Refuse (one line naming the command) a store holding results under the previous version's keys."""
    moves = legacy_results(study, plan, store)
    if moves:
        raise ConfigError(study.source, "storage.root", f"{len(moves)} result(s) in {store.root} were written by "
                          f"raysweep 0.1.0 under its keys (e.g. {moves[0].job.stage} '{moves[0].job.id}'); run "
                          f"`raysweep migrate {study.source}` to reuse them without retraining, or remove them")


def migrate_store(study: StudySpec, plan: StudyPlan, store: Store) -> list[Move]:
    """Move every reusable old result under its new key (idempotent: a second call finds nothing to move)."""
    from raysweep.tracking import Tracker
    from raysweep.tracking.keys import MIGRATED_TAG
    from raysweep.tracking.tracker import HASH_TAG

    moves = legacy_results(study, plan, store)
    if moves and study.latent_storage is not None and "://" in study.latent_storage:
        raise ConfigError(study.source, "storage.latents", "migrate moves latents on a local filesystem only; "
                          f"copy {study.latent_storage} to a directory first")
    tracker = Tracker(study.tracking_uri, study.experiment_name) if moves else None
    for move in moves:
        move.new.parent.mkdir(parents=True, exist_ok=True)
        os.replace(move.old, move.new)
        if isinstance(move.job, TokenizerJob):
            _move_latents(store, move.old.name, move.job.key)
        result = Store.result(move.new) or {}
        Store.mark_done(move.new, {**result, **move.job.record(), ASSUMED: list(move.assumed),
                                   MIGRATED_FROM: move.old.name})
        if tracker is not None and (run := tracker.find_run(move.job.stage, move.old.name)) is not None:
            tracker.set_tags(run.info.run_id, {HASH_TAG: move.job.key, MIGRATED_TAG: move.old.name})
    for job in plan.jobs:
        if isinstance(job, MetricJob):
            _migrate_metric_marker(store, job)
    return moves


def _move_latents(store: Store, old: str, new: str) -> None:
    """The tokenizer's Parquet latents to its new key, their footer naming it (the diffusion stage checks it)."""
    for split in ("train", "val"):
        source, target = Path(store.latents(old, split)), Path(store.latents(new, split))
        if not source.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        for path in sorted(target.glob("*.parquet")):
            table = pq.read_table(path)
            footer = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            table = table.replace_schema_metadata({**footer, TOKENIZER_KEY_FOOTER: new})
            with atomic_file(path) as tmp:
                pq.write_table(table, tmp)
        if not any(source.parent.iterdir()):
            source.parent.rmdir()


def _migrate_metric_marker(store: Store, job: MetricJob) -> None:
    """An old metric marker (`{"metrics": [value keys], "run_id"}`) as entries: a metric whose every value key it
    lists is kept, with its parameters and version assumed; the others are computed by the next run."""
    from raysweep.metrics.registry import build_metric

    found = store.found(job)
    if found is None or not isinstance(found.get("metrics"), list):
        return
    logged = set(found["metrics"])
    entries: dict[str, Mapping[str, Any]] = {}
    for name, entry in job.record()["metrics"].items():
        if set(build_metric(name, **entry["inputs"]["params"]).keys) <= logged:
            entries[name] = {**entry, ASSUMED: list(METRIC_ASSUMED)}
    marker = store.marker(job)
    assert marker is not None
    Store.mark_done(marker, {"metrics": entries, "values": sorted(logged), "run_id": found["run_id"]})
