"""Scoring glue for the stages: the study's feature networks, reference statistics cached in the store, generation
and reconstruction scores with their evaluation cards, and the CFG curve figure.

Real-image features are extracted once per (dataset, split, network + weights, preprocessing) and cached under
`<root>/reference/stats/`; stage 0 fills the cache on the driver, so trials only read it. Generated images are
featurised once per CFG scale and network; FD, FDr, IS and PRC all come from those features (`features.generation`).
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raysweep.atomic import atomic_file
from raysweep.config.plan import scorer_key
from raysweep.config.spec import ScorerSpec
from raysweep.engine.context import TrialContext
from raysweep.engine.images import load_images
from raysweep.engine.store import Store
from raysweep.features import (
    FEATURE_NETWORKS,
    EvalCard,
    FeatureSpec,
    NetworkReference,
    ReferenceStats,
    cached_reference_stats,
    extract_features,
    generation_scores,
    load_domain_net,
    network_reference,
    reconstruction_card,
    reference_key,
    resolve_feature_network,
    sample_moments,
    score_images,
)
from raysweep.features.card import PREPROCESSING
from raysweep.features.generation import fd_between, fd_shrinkage, scorer_scores
from raysweep.tracking.keys import scorer_metric

DOMAIN_FILE = "domain.pt"
STATS_DIR = "stats"
GENERATION_REFERENCE, FDR_REFERENCE = "train", "val"


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float images -> uint8 [N,3,H,W], the input format of torch-fidelity."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


@dataclass(frozen=True)
class ScoringNetwork:
    spec: FeatureSpec
    model: Any  # the DomainNet for `domain`, else None

    def score(self, generated: np.ndarray, reference: np.ndarray, metrics: tuple[str, ...]) -> dict[str, float]:
        return score_images(generated, reference, self.spec, metrics=metrics)


@functools.lru_cache(maxsize=4)
def _load(name: str, weights: str | None) -> ScoringNetwork:
    spec = resolve_feature_network(name, weights_path=weights)
    model = load_domain_net(Path(weights)).eval() if name == "domain" and weights else None
    return ScoringNetwork(spec, model)


def feature_network(ctx: TrialContext) -> ScoringNetwork:
    return _load(ctx.feature_network, ctx.feature_weights)


def scoring_networks(primary: FeatureSpec) -> list[FeatureSpec]:
    """The FID network first, then every other registered network whose weights are on this machine (FD per
    network, FDr's average). The DomainNet only exists as the study's own primary network."""
    found = [primary]
    for name, net in sorted(FEATURE_NETWORKS.items()):
        if name == primary.name or net.kind == "domain":
            continue
        try:
            found.append(resolve_feature_network(name))
        except FileNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class ExtraScorers:
    """The study's extra scorers (`evaluation.scorers`) on this machine: the networks that score, in config order,
    and why each other one does not."""

    networks: tuple[FeatureSpec, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)

    def card_text(self) -> str:
        """"domain-ae:<sha12>; inception-v3-compat skipped: <reason>": the card's `extra_scorers`."""
        return "; ".join([*(f"{n.name}:{n.weights_sha256[:12]}" for n in self.networks),
                          *(f"{name} skipped: {why}" for name, why in self.skipped.items())])


def study_trained_weights(store: Store, dataset_key: str, scorer: ScorerSpec) -> Path:
    """Where stage 0 saves a study-trained scorer (`domain-ae`): under its own key, beside the domain network."""
    return store.reference(scorer_key(scorer, dataset_key)) / FEATURE_NETWORKS[scorer.name].weights_files[0]


def extra_scorers(store: Store, dataset_key: str, scorers: Sequence[ScorerSpec], primary: str) -> ExtraScorers:
    """Resolve each extra scorer's local weights: a study-trained one from stage 0's output (FileNotFoundError before
    stage 0 trained it), a published one from its `weights_path` only: without one it is skipped, never downloaded."""
    networks, skipped = [], {}
    for scorer in scorers:
        if scorer.name == primary:
            skipped[scorer.name] = "it is the study's FID network (reference.feature_network), scored as gen/gfid"
        elif FEATURE_NETWORKS[scorer.name].kind == "domain":
            networks.append(resolve_feature_network(scorer.name, study_trained_weights(store, dataset_key, scorer)))
        elif scorer.weights_path is None:
            skipped[scorer.name] = ("no weights_path given in evaluation.scorers (raysweep never downloads weights: "
                                    "point it at a local copy of the file)")
        else:
            networks.append(resolve_feature_network(scorer.name, scorer.weights_path))
    return ExtraScorers(tuple(networks), skipped)


def reference_statistics(store: Store, dataset_key: str, spec: FeatureSpec, split: str) -> ReferenceStats:
    """A split's statistics in the network's FID layer: read from the store, computed and saved on a miss."""
    key = reference_key(dataset_key, split, spec, PREPROCESSING)
    return cached_reference_stats(
        store.reference(STATS_DIR), key,
        lambda: extract_features(load_images(store.root, dataset_key, split).images, spec)[spec.layers.fid])


def prepare_reference_statistics(store: Store, dataset_key: str, spec: FeatureSpec) -> dict[str, str]:
    """Fill the cache for both splits (stage 0, on the driver); -> {split: stats key}."""
    return {split: reference_statistics(store, dataset_key, spec, split).key
            for split in (GENERATION_REFERENCE, FDR_REFERENCE)}


class GenerationScorer:
    """Scores generated uint8 images [N,3,H,W] of one run against the cached references of every network: the FID
    network and the FD networks (`scoring_networks`), and each extra scorer (its own gFID, floor and KID)."""

    def __init__(self, store: Store, dataset_key: str, primary: FeatureSpec, num_samples: int, seed: int,
                 extras: Sequence[FeatureSpec] = ()) -> None:
        self.primary, self.seed = primary, seed
        self.networks = scoring_networks(primary)
        self.extras = tuple(extras)
        self.references: dict[str, NetworkReference] = {}
        for spec in (*self.networks, *self.extras):
            train, val = (reference_statistics(store, dataset_key, spec, s) for s in (GENERATION_REFERENCE,
                                                                                       FDR_REFERENCE))
            self.references[spec.name] = network_reference(spec, train, val, num_samples)

    @property
    def reference_size(self) -> int:
        return self.references[self.primary.name].train.n

    def score(self, images: np.ndarray) -> dict[str, float]:
        """-> {gfid, is (if the FID network has a classifier), fd_<net>, fdr, precision, recall, fd_floor, fdinf,
        kid}, and per extra scorer {gfid, fd_floor, kid}@<scorer>."""
        features, logits = {}, None
        for spec in (*self.networks, *self.extras):
            isc = spec.layers.isc if spec is self.primary else None
            extracted = extract_features(images, spec, layers=[spec.layers.fid, *([isc] if isc else [])])
            features[spec.name] = extracted[spec.layers.fid]
            if isc:
                logits = extracted[isc]
        fd_networks = [spec.name for spec in self.networks]
        scores = generation_scores({n: features[n] for n in fd_networks}, {n: self.references[n] for n in fd_networks},
                                   self.primary.name, logits=logits, seed=self.seed)
        for spec in self.extras:
            own = scorer_scores(features[spec.name], self.references[spec.name], self.seed)
            scores.update({scorer_metric(name, spec.name): value for name, value in own.items()})
        return scores


def reconstruction_scores(store: Store, dataset_key: str, spec: FeatureSpec, reconstructions: np.ndarray,
                          split: str = "val") -> tuple[dict[str, float], EvalCard]:
    """rFID of uint8 reconstructions [N,3,H,W] of `split` against that split's cached statistics, and its card.
    Same FD numerics and small-sample shrinkage rule as gFID."""
    stats = reference_statistics(store, dataset_key, spec, split)
    features = extract_features(reconstructions, spec)[spec.layers.fid]
    mu, sigma = sample_moments(features)
    shrinkage = fd_shrinkage(stats.mu.shape[0], len(features), stats.n)
    rfid = fd_between(mu, sigma, stats.mu, stats.sigma, shrinkage)
    return {"rfid": rfid}, reconstruction_card(spec, dataset_key, split, stats.n)


def save_cfg_curve(gfid: dict[float, float], best: float, path: Path, metric: str = "gFID") -> Path:
    """The CFG curve (score vs guidance scale, best scale marked) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted(gfid)
    fig, ax = plt.subplots(figsize=(4, 3), dpi=120)
    ax.plot(scales, [gfid[s] for s in scales], "o-", color="C0")
    ax.plot([best], [gfid[best]], "*", color="C3", markersize=12, label=f"best: cfg {best:g}")
    ax.set(xlabel="CFG scale", ylabel=metric, title=f"{metric} vs CFG scale")
    ax.legend()
    fig.tight_layout()
    with atomic_file(path, durable=False) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path
