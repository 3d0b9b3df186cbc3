"""`raysweep migrate`: a store written under an earlier version's keys moved under the current keys, without
retraining. Three earlier formulas are known, the newest tried first:

- 0.3.0 (up to commit bd6617d): a diffusion run's training key without what the run measures while it trains (its
  `curve`: `evaluation.checkpoint_samples` and `storage.checkpoint_every`; its ASHA `tiers`), its evaluation key with
  `checkpoint_samples`; tokenizer and metric keys as now.
- 0.2.0 (complete keys; up to commit cdbe955): 0.3.0's inputs, but the reference network's without its code version
  (`REFERENCE_CODE_VERSION`): tokenizer keys, and through them every key below them, hash `reference` without
  `version`; the domain network's directory is keyed the same way.
- 0.1.0 (commit 8e5a5a3): a tokenizer's key was its trial fields alone; a diffusion run's hashed its trial, seed, old
  tokenizer key and evaluation; a metric job's markers lived under its run with no key of their own (a metric is
  kept when every value it logs is listed in the old marker).

An old result is reused only when its key, recomputed with the old formula from the current study, matches a result
in the store (and a diffusion run's recorded `checkpoint_samples` are its planned curve's: else it trains again). It
is moved to its new key (with its tokenizer's latents, whose footer names the key) and records the inputs the old key
did not cover under `assumed_at_migration` (`status` lists them); its MLflow run is found under the new key. `run`
refuses a store that still holds such results (`needs_migration`), so none is reused silently or retrained without
being asked.
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
from raysweep.config.plan import (
    STOPPED_RESULT,
    DiffusionJob,
    Job,
    MetricJob,
    StudyPlan,
    TokenizerJob,
    dataset_key,
    reference_key,
)
from raysweep.config.spec import EvaluationSpec, ReferenceSpec, StudySpec
from raysweep.engine.store import Store
from raysweep.hashing import config_hash

ASSUMED = "assumed_at_migration"  # in a migrated result: the inputs its old key did not cover
MIGRATED_FROM = "migrated_from"  # in a migrated result: its old key
V0_1, V0_2, V0_3 = "0.1.0", "0.2.0", "0.3.0"  # the releases whose keys `migrate` knows
# what each old key left out (the dotted input fields of the new key): 0.1.0's
TOKENIZER_ASSUMED: tuple[str, ...] = ("dataset", "reference", "version")
DIFFUSION_ASSUMED: tuple[str, ...] = ("version", "evaluation.scorer")
METRIC_ASSUMED = ("params", "version")
# 0.2.0's: the reference network's code version, in a tokenizer's key and, through it, in every key below it
REFERENCE_ASSUMED: tuple[str, ...] = ("reference.version",)
DIFFUSION_REFERENCE_ASSUMED: tuple[str, ...] = ("tokenizer", "evaluation.scorer.version")
UPSTREAM_ASSUMED = ("upstream",)
# 0.3.0's: what a diffusion run measured while it trained (the curve's `every` was in no key, its samples in the
# evaluation key, which a re-score overwrites: the run is assumed to have measured what the study now says)
MEASURED_ASSUMED: tuple[str, ...] = ("curve", "tiers")
TOKENIZER_KEY_FOOTER = "raysweep.tokenizer_key"  # the latents' footer entry naming their tokenizer's key


def legacy_tokenizer_key(job: TokenizerJob) -> str:
    return job.trial.key()


# the evaluation settings 0.1.0 had: fields added since (the checkpoint curve, the sampler check) were not in its key
LEGACY_EVALUATION_FIELDS = {"sampling_steps", "cfg_scales", "guidance_interval", "num_samples", "batch_size",
                            "trajectory_samples"}


def legacy_diffusion_key(job: DiffusionJob, evaluation: EvaluationSpec) -> str:
    return config_hash({"diffusion": job.trial.key(), "seed": job.seed, "tokenizer": job.tokenizer.trial.key(),
                        "evaluation": evaluation.model_dump(include=LEGACY_EVALUATION_FIELDS)})


def _unversioned(reference: Mapping[str, Any]) -> dict[str, Any]:
    """The reference network's key inputs as 0.2.0 had them: its settings, no code version."""
    return {k: v for k, v in reference.items() if k != "version"}


def unversioned_tokenizer_key(job: TokenizerJob) -> str:
    return config_hash({**job.inputs, "reference": _unversioned(job.inputs["reference"])})


def unmeasured_inputs(job: DiffusionJob) -> dict[str, Any]:
    """A diffusion run's training key inputs as 0.3.0 had them: without what the run measures while it trains."""
    return {k: v for k, v in job.inputs.items() if k not in MEASURED_ASSUMED}


def unmeasured_evaluation(job: DiffusionJob, checkpoint_samples: int) -> dict[str, Any]:
    """A diffusion run's evaluation key inputs as 0.3.0 had them: the evaluation with the curve's samples."""
    return {**job.evaluation, "evaluation": {**job.evaluation["evaluation"], "checkpoint_samples": checkpoint_samples}}


def unmeasured_diffusion_key(job: DiffusionJob) -> str:
    return config_hash(unmeasured_inputs(job))


def unmeasured_evaluation_key(job: DiffusionJob, training_key: str, checkpoint_samples: int) -> str:
    return config_hash({**unmeasured_evaluation(job, checkpoint_samples), "training": training_key})


def unversioned_diffusion_key(job: DiffusionJob) -> str:
    return config_hash({**unmeasured_inputs(job), "tokenizer": unversioned_tokenizer_key(job.tokenizer)})


def unversioned_evaluation_key(job: DiffusionJob, training_key: str, checkpoint_samples: int) -> str:
    evaluation = unmeasured_evaluation(job, checkpoint_samples)
    return config_hash({**evaluation, "training": training_key, "scorer": _unversioned(evaluation["scorer"])})


def unversioned_reference_key(spec: ReferenceSpec, dataset: str) -> str:
    return config_hash({"dataset": dataset, **spec.model_dump()})


@dataclass(frozen=True)
class Move:
    """One old result the current study reuses: `job`'s result, found in `old` (written by `release`), goes to
    `new`, with `record` (the job's inputs, and where the old evaluation matched, its evaluation key)."""

    job: Job
    old: Path
    new: Path
    assumed: tuple[str, ...]
    release: str
    record: Mapping[str, Any]


def _old_keys(job: Job, study: StudySpec) -> list[tuple[str, str, tuple[str, ...]]]:
    """(release, `job`'s key under that release's formula, what that key left out), newest first."""
    if isinstance(job, TokenizerJob):
        return [(V0_2, unversioned_tokenizer_key(job), REFERENCE_ASSUMED),
                (V0_1, legacy_tokenizer_key(job), TOKENIZER_ASSUMED)]
    if isinstance(job, DiffusionJob):
        return [(V0_3, unmeasured_diffusion_key(job), MEASURED_ASSUMED),
                (V0_2, unversioned_diffusion_key(job), (*DIFFUSION_REFERENCE_ASSUMED, *MEASURED_ASSUMED)),
                (V0_1, legacy_diffusion_key(job, study.evaluation), (*DIFFUSION_ASSUMED, *MEASURED_ASSUMED))]
    return []


OLD_EVALUATION_KEYS = {V0_3: unmeasured_evaluation_key, V0_2: unversioned_evaluation_key}  # 0.1.0's: in its key


def _record(job: Job, release: str, old_key: str, result: Mapping[str, Any], study: StudySpec) -> dict[str, Any]:
    """What a moved result records of `job`: its inputs; a 0.2.0 or 0.3.0 diffusion run's evaluation key only when
    it was scored under the study's evaluation (else the next `run` re-scores it; 0.1.0's key held the
    evaluation)."""
    record = job.record()
    old_evaluation_key = OLD_EVALUATION_KEYS.get(release)
    if isinstance(job, DiffusionJob) and old_evaluation_key is not None and STOPPED_RESULT not in result and \
            result.get("evaluation_key") != old_evaluation_key(job, old_key, study.evaluation.checkpoint_samples):
        return {"inputs": record["inputs"]}
    return record


def _measured_as_planned(job: Job, result: Mapping[str, Any]) -> bool:
    """Whether an old diffusion result may have measured what `job` measures while it trains: not when it records
    another `checkpoint_samples` (its curve's samples, in its evaluation inputs) than the job's curve has (none: 0).
    Under ASHA, and where nothing is recorded, it is assumed (`MEASURED_ASSUMED`)."""
    if not isinstance(job, DiffusionJob) or job.tiers is not None:
        return True
    recorded = (result.get("evaluation_inputs") or {}).get("evaluation", {}).get("checkpoint_samples")
    return recorded is None or recorded == (job.curve.samples if job.curve is not None else 0)


def legacy_results(study: StudySpec, plan: StudyPlan, store: Store) -> list[Move]:
    """The planned tokenizers and diffusion runs unfinished under their key whose old key has a result that may
    have measured what they measure while training (plan order: tokenizers before their diffusion runs); a result
    that did not is left where it is, and the run trains again under its new key."""
    moves = []
    for job in plan.jobs:
        new, old_keys = store.marker(job), _old_keys(job, study)
        if new is None or not old_keys or store.found(job) is not None:
            continue
        for release, key, assumed in old_keys:
            old = new.parent / key
            result = Store.result(old)
            if old != new and result is not None and _measured_as_planned(job, result):
                moves.append(Move(job, old, new, assumed, release, _record(job, release, key, result, study)))
                break
    return moves


def needs_migration(study: StudySpec, plan: StudyPlan, store: Store) -> None:
    """Refuse (one line naming the command) a store holding results under an earlier version's keys."""
    moves = legacy_results(study, plan, store)
    if moves:
        raise ConfigError(study.source, "storage.root", f"{len(moves)} result(s) in {store.root} were written by "
                          f"raysweep {moves[0].release} under its keys (e.g. {moves[0].job.stage} "
                          f"'{moves[0].job.id}'); run `raysweep migrate {study.source}` to reuse them without "
                          "retraining, or remove them")


def migrate_store(study: StudySpec, plan: StudyPlan, store: Store) -> list[Move]:
    """Move every reusable old result under its new key (idempotent: a second call finds nothing to move)."""
    from raysweep.tracking import Tracker
    from raysweep.tracking.keys import EVALUATION_KEY_TAG, MIGRATED_TAG
    from raysweep.tracking.tracker import HASH_TAG

    moves = legacy_results(study, plan, store)
    if moves and study.latent_storage is not None and "://" in study.latent_storage:
        raise ConfigError(study.source, "storage.latents", "migrate moves latents on a local filesystem only; "
                          f"copy {study.latent_storage} to a directory first")
    _move_reference(study, store)
    tracker = Tracker(study.tracking_uri, study.experiment_name) if moves else None
    for move in moves:
        move.new.parent.mkdir(parents=True, exist_ok=True)
        os.replace(move.old, move.new)
        if isinstance(move.job, TokenizerJob):
            _move_latents(store, move.old.name, move.job.key)
        result = Store.result(move.new) or {}
        Store.mark_done(move.new, {**result, **move.record, ASSUMED: _assumed(result, move.assumed),
                                   MIGRATED_FROM: move.old.name})
        if tracker is not None and (run := tracker.find_run(move.job.stage, move.old.name)) is not None:
            tags = {HASH_TAG: move.job.key, MIGRATED_TAG: move.old.name}
            if "evaluation_key" in move.record:
                tags[EVALUATION_KEY_TAG] = move.record["evaluation_key"]
            tracker.set_tags(run.info.run_id, tags)
    for job in plan.jobs:
        if isinstance(job, MetricJob):
            _migrate_metric_marker(store, job)
    return moves


def _assumed(result: Mapping[str, Any], assumed: tuple[str, ...]) -> list[str]:
    """What a result migrated twice (0.1.0 -> 0.2.0 -> now) assumes: both migrations' fields."""
    return list(dict.fromkeys([*result.get(ASSUMED, []), *assumed]))


def _move_reference(study: StudySpec, store: Store) -> None:
    """The domain network's directory to its key with the code version: its weights scored the results migrated,
    and score the ones computed next (its reference statistics are keyed by the weights' sha256, so they hold)."""
    if study.reference.feature_network != "domain":
        return
    dataset = dataset_key(study.dataset)
    old = store.reference(unversioned_reference_key(study.reference, dataset))
    new = store.reference(reference_key(study.reference, dataset))
    done = Store.result(old)
    if done is None or new.exists():
        return
    os.replace(old, new)
    Store.mark_done(new, {**done, "weights": str(new / Path(done["weights"]).name), ASSUMED: ["version"],
                          MIGRATED_FROM: old.name})


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
    found = store.found(job)
    if found is not None and isinstance(found.get("metrics"), list):
        _entries_of_value_keys(store, job, found)
    elif found is not None and isinstance(found.get("metrics"), Mapping):
        _rekey_entries(store, job, found)


def _rekey_entries(store: Store, job: MetricJob, found: Mapping[str, Any]) -> None:
    """A 0.2.0 marker under a migrated run: an entry whose key is its current inputs over the run's old key (the
    `migrated_from` of the run's result) gets its current key, its upstream assumed; the others stay as they are."""
    marker = store.cached_marker(job)
    old_upstream = (Store.result(marker.parent) or {}).get(MIGRATED_FROM)
    if old_upstream is None:
        return
    entries = dict(found["metrics"])
    rekeyed = {e.name: {"key": e.key, "inputs": dict(e.inputs),
                        ASSUMED: _assumed(entries[e.name], UPSTREAM_ASSUMED)}
               for e in job.metrics if e.name in entries and entries[e.name].get("key") != e.key
               and entries[e.name].get("key") == config_hash({**e.inputs, "upstream": old_upstream})}
    if rekeyed:
        Store.mark_done(marker, {**found, "metrics": {**entries, **rekeyed}})


def _entries_of_value_keys(store: Store, job: MetricJob, found: Mapping[str, Any]) -> None:
    """A 0.1.0 metric marker (`{"metrics": [value keys], "run_id"}`) as entries: a metric whose every value key it
    lists is kept, with its parameters and version assumed; the others are computed by the next run."""
    from raysweep.metrics.registry import build_metric

    logged = set(found["metrics"])
    entries: dict[str, Mapping[str, Any]] = {}
    for name, entry in job.record()["metrics"].items():
        if set(build_metric(name, **entry["inputs"]["params"]).keys) <= logged:
            entries[name] = {**entry, ASSUMED: list(METRIC_ASSUMED)}
    marker = store.marker(job)
    assert marker is not None
    Store.mark_done(marker, {"metrics": entries, "values": sorted(logged), "run_id": found["run_id"]})
