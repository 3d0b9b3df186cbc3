"""Stage 0: the feature network that scores FID/IS for every tokenizer and diffusion trial, and its reference
statistics (train and val splits), computed here on the driver once so that trials only read them.

With a user-supplied weights file (e.g. torch-fidelity's Inception) nothing is trained. Without one — this
machine, CI, any offline site — a small domain network is trained on the study's own training split, once per
(dataset, settings) hash, and registered with torch-fidelity; MLflow records which network produced each score.
"""
from __future__ import annotations

from pathlib import Path

from raysweep.config.plan import reference_key
from raysweep.config.spec import ReferenceSpec
from raysweep.engine.images import load_images
from raysweep.engine.store import Store
from raysweep.features import resolve_feature_network, save_domain_net, train_domain_net, weights_sha256
from raysweep.stages.scoring import DOMAIN_FILE, prepare_reference_statistics, scoring_networks
from raysweep.tracking import Tracker


def prepare_reference(spec: ReferenceSpec, store: Store, dataset_key: str, tracker: Tracker,
                      study_run_id: str) -> str | None:
    """Return the weights path of the scoring network (training the domain net if needed), with the reference
    statistics of every scoring network cached in the store."""
    weights = _prepare_network(spec, store, dataset_key, tracker, study_run_id)
    primary = resolve_feature_network(spec.feature_network, weights_path=weights)
    for network in scoring_networks(primary):
        keys = prepare_reference_statistics(store, dataset_key, network)
        tracker.set_tags(study_run_id, {f"reference.stats.{network.name}.{split}": key for split, key in keys.items()})
    return weights


def _prepare_network(spec: ReferenceSpec, store: Store, dataset_key: str, tracker: Tracker,
                     study_run_id: str) -> str:
    if spec.feature_network != "domain":
        return str(resolve_feature_network(spec.feature_network, weights_path=spec.weights_path).weights_path)
    directory = store.reference(reference_key(spec, dataset_key))
    weights = directory / DOMAIN_FILE
    done = store.result(directory)
    if done is None:
        train = load_images(store.root, dataset_key, "train")
        val = load_images(store.root, dataset_key, "val")
        print(f"[raysweep] stage 0: training the domain feature network ({spec.train_steps} steps)", flush=True)
        model, stats = train_domain_net(train.as_float(), train.labels, steps=spec.train_steps,
                                        batch_size=spec.batch_size, lr=spec.lr, seed=0,
                                        val=(val.as_float(), val.labels))
        directory.mkdir(parents=True, exist_ok=True)
        save_domain_net(model, weights, meta={"dataset_key": dataset_key, **stats})
        done = {"weights": str(weights), "sha256": weights_sha256(weights), **stats}
        store.mark_done(directory, done)
    tracker.log_metrics(study_run_id, {f"reference/{k}": v for k, v in done.items()
                                       if isinstance(v, (int, float))})
    tracker.set_tags(study_run_id, {"reference.feature_network": "domain",
                                    "reference.weights_sha256": done["sha256"]})
    return str(Path(done["weights"]))
