"""Stage 0: the feature network that scores FID/IS for every tokenizer and diffusion trial, and its reference
statistics (train and val splits), computed here on the driver once so that trials only read them; then the same
for each extra scorer (`evaluation.scorers`), with its real-halves check.

With a user-supplied weights file (e.g. torch-fidelity's Inception) nothing is trained. Without one — this
machine, CI, any offline site — a small domain network is trained on the study's own training split, once per
(dataset, settings) hash, and registered with torch-fidelity; MLflow records which network produced each score.
The study-trained extra scorer (`domain-ae`) is trained the same way under its own key, which enters only the
diffusion evaluation key: adding a scorer re-scores saved diffusion models and retrains nothing else.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from raysweep.config.plan import reference_key
from raysweep.config.spec import ReferenceSpec, ScorerSpec
from raysweep.engine.images import load_images
from raysweep.engine.store import Store
from raysweep.features import (
    feature_network,
    resolve_feature_network,
    save_domain_net,
    train_domain_autoencoder,
    train_domain_net,
    weights_sha256,
)
from raysweep.features.generation import real_halves_check
from raysweep.stages.scoring import (
    DOMAIN_FILE,
    FDR_REFERENCE,
    GENERATION_REFERENCE,
    extra_scorers,
    prepare_reference_statistics,
    reference_statistics,
    scoring_networks,
    study_trained_weights,
)
from raysweep.tracking import Tracker
from raysweep.tracking.keys import SCORER_SKIPPED_TAG_PREFIX, scorer_reference_key

Trained = tuple[Any, dict[str, float]]  # (model, training stats), what a study-trained network's trainer returns


def prepare_reference(spec: ReferenceSpec, store: Store, dataset_key: str, tracker: Tracker,
                      study_run_id: str, scorers: Sequence[ScorerSpec] = ()) -> str | None:
    """Return the weights path of the scoring network (training the domain net if needed), with the reference
    statistics of every scoring network and extra scorer cached in the store."""
    weights = _prepare_network(spec, store, dataset_key, tracker, study_run_id)
    primary = resolve_feature_network(spec.feature_network, weights_path=weights)
    for network in scoring_networks(primary):
        keys = prepare_reference_statistics(store, dataset_key, network)
        tracker.set_tags(study_run_id, {f"reference.stats.{network.name}.{split}": key for split, key in keys.items()})
    _prepare_scorers(scorers, spec.feature_network, store, dataset_key, tracker, study_run_id)
    return weights


def _prepare_scorers(scorers: Sequence[ScorerSpec], primary: str, store: Store, dataset_key: str, tracker: Tracker,
                     study_run_id: str) -> None:
    """Train the study-trained extra scorers, cache every extra scorer's statistics, and log its real-halves check
    (`reference/<check>@<scorer>`) or why it is skipped (a study-run tag and a line on the console)."""
    for scorer in scorers:
        if scorer.name != primary and feature_network(scorer.name).kind == "domain":  # domain-ae, trained here
            steps = scorer.train_steps
            done = _train_once(store, study_trained_weights(store, dataset_key, scorer), dataset_key,
                               f"the extra scorer '{scorer.name}' ({steps} steps)",
                               lambda train, val: train_domain_autoencoder(train.as_float(), steps=steps,
                                                                           val=val.as_float()))
            tracker.log_metrics(study_run_id, {scorer_reference_key(k, scorer.name): v for k, v in done.items()
                                               if isinstance(v, (int, float))})
    extras = extra_scorers(store, dataset_key, scorers, primary)
    for name, why in extras.skipped.items():
        print(f"[raysweep] stage 0: extra scorer '{name}' skipped: {why}", flush=True)
    tracker.set_tags(study_run_id, {f"{SCORER_SKIPPED_TAG_PREFIX}{name}": why for name, why in extras.skipped.items()})
    for network in extras.networks:
        prepare_reference_statistics(store, dataset_key, network)
        train, val = (reference_statistics(store, dataset_key, network, s) for s in (GENERATION_REFERENCE,
                                                                                     FDR_REFERENCE))
        tracker.log_metrics(study_run_id, {scorer_reference_key(k, network.name): v
                                           for k, v in real_halves_check(train, val).items()})


def _train_once(store: Store, weights: Path, dataset_key: str, what: str,
                train: Callable[[Any, Any], Trained]) -> dict[str, Any]:
    """A study-trained network's result: read from its directory, else trained on the train split (validation
    split held out), saved with its stats and marked done."""
    directory = weights.parent
    done = store.result(directory)
    if done is None:
        print(f"[raysweep] stage 0: training {what}", flush=True)
        model, stats = train(load_images(store.root, dataset_key, "train"), load_images(store.root, dataset_key, "val"))
        directory.mkdir(parents=True, exist_ok=True)
        save_domain_net(model, weights, meta={"dataset_key": dataset_key, **stats})
        done = {"weights": str(weights), "sha256": weights_sha256(weights), **stats}
        store.mark_done(directory, done)
    return done


def _prepare_network(spec: ReferenceSpec, store: Store, dataset_key: str, tracker: Tracker,
                     study_run_id: str) -> str:
    if spec.feature_network != "domain":
        return str(resolve_feature_network(spec.feature_network, weights_path=spec.weights_path).weights_path)
    done = _train_once(store, store.reference(reference_key(spec, dataset_key)) / DOMAIN_FILE, dataset_key,
                       f"the domain feature network ({spec.train_steps} steps)",
                       lambda train, val: train_domain_net(train.as_float(), train.labels, steps=spec.train_steps,
                                                           batch_size=spec.batch_size, lr=spec.lr, seed=0,
                                                           val=(val.as_float(), val.labels)))
    tracker.log_metrics(study_run_id, {f"reference/{k}": v for k, v in done.items()
                                       if isinstance(v, (int, float))})
    tracker.set_tags(study_run_id, {"reference.feature_network": "domain",
                                    "reference.weights_sha256": done["sha256"]})
    return str(Path(done["weights"]))
