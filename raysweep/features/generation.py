"""Generation scores from features against cached reference statistics: gFID, IS, FD per network, FDr, PRC.

- FD: ours (`frechet.py`, float64, eigh), generated vs the *train* reference, on every network given; gFID is FD
  on the FID network. When any count is <= D, all covariances of that network are shrunk by SMALL_SAMPLE_SHRINKAGE
  towards a scaled identity (FD_PROTOCOL, on the eval card) instead of failing or measuring a rank deficit.
- FDr = FD(generated, train) / FD(val, train), averaged over the networks (METRICS.md §9).
- IS: torch-fidelity's `isc_features_to_metric` on the FID network's logits, splits as `sample_settings`.
- Precision / recall: torch-fidelity's kNN (k = 3) on features, against a seeded reference subset of the generated
  count (PRC is biased by unequal set sizes).
- Validity (`sample_bias`): on the FID network, the real floor `fd_floor` = FD(val, train) (what no generator can
  be expected to beat on these features), FD∞ (`fdinf`, FD extrapolated to infinite N) and KID (`kid`, unbiased);
  on each extra scorer, its own gFID, floor and KID (`scorer_scores`) and its real-halves check.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric
from torch_fidelity.metric_prc import calculate_precision_recall_part

from raysweep.features.fidelity import MIN_SCORE_SAMPLES, sample_settings
from raysweep.features.frechet import Array, frechet_distance, sample_moments, shrink_covariance
from raysweep.features.reference_stats import ReferenceStats
from raysweep.features.registry import FeatureSpec
from raysweep.features.sample_bias import fd_infinity, kid

SMALL_SAMPLE_SHRINKAGE = 0.1
PRC_NEIGHBOURS = 3
FD_PROTOCOL = (f"float64, eigh; unbiased covariances, all shrunk by {SMALL_SAMPLE_SHRINKAGE:g} towards tr/D*I "
               "when a set has N <= D")


def fd_shrinkage(dim: int, *counts: int) -> float:
    """The documented small-sample rule: SMALL_SAMPLE_SHRINKAGE if any set has N <= D, else 0."""
    return SMALL_SAMPLE_SHRINKAGE if min(counts) <= dim else 0.0


def fd_between(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, shrinkage: float) -> float:
    return frechet_distance(mu1, shrink_covariance(sigma1, shrinkage), mu2, shrink_covariance(sigma2, shrinkage))


@dataclass(frozen=True)
class NetworkReference:
    """One network's references for a run: train statistics, FDr's denominator FD(val, train), the shrinkage."""

    spec: FeatureSpec
    train: ReferenceStats
    val_fd: float
    shrinkage: float

    @property
    def metric(self) -> str:
        """`fd_<network>` with MLflow- and table-safe characters."""
        return "fd_" + self.spec.name.replace("-", "_")


def network_reference(spec: FeatureSpec, train: ReferenceStats, val: ReferenceStats,
                      num_samples: int) -> NetworkReference:
    """ValueError when val and train are indistinguishable (FD 0), since FDr would divide by zero."""
    if num_samples < MIN_SCORE_SAMPLES:
        raise ValueError(f"{num_samples} generated samples; generation scores need at least {MIN_SCORE_SAMPLES}")
    shrinkage = fd_shrinkage(train.mu.shape[0], num_samples, train.n, val.n)
    val_fd = fd_between(val.mu, val.sigma, train.mu, train.sigma, shrinkage)
    if not val_fd > 0:
        raise ValueError(f"feature network '{spec.name}': FD(val, train) = {val_fd}; FDr is undefined when the "
                         "validation and training references coincide")
    return NetworkReference(spec, train, val_fd, shrinkage)


def fd_to_reference(features: Array, reference: NetworkReference) -> float:
    """FD of generated features [N, D] to the network's train reference, under the run's shrinkage."""
    mu, sigma = sample_moments(features)
    return fd_between(mu, sigma, reference.train.mu, reference.train.sigma, reference.shrinkage)


def precision_recall(generated: Array, reference: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """torch-fidelity's kNN precision / recall (k = 3); generated [N, D], reference [M, D] subsampled to N."""
    gen = torch.as_tensor(np.asarray(generated, np.float32))
    keep = np.sort(np.random.default_rng(seed).permutation(len(reference))[:len(gen)])
    ref = torch.as_tensor(np.asarray(reference[keep], np.float32))
    if min(len(gen), len(ref)) <= PRC_NEIGHBOURS:
        raise ValueError(f"precision/recall needs more than {PRC_NEIGHBOURS} samples per set, got {len(gen)} "
                         f"generated and {len(ref)} reference")
    return calculate_precision_recall_part(gen, ref, neighborhood=PRC_NEIGHBOURS)


def inception_score(logits: Array, seed: int = 2020) -> float:
    """IS of logits [N, K] (torch-fidelity's formula; splits as `sample_settings`)."""
    splits = sample_settings(len(logits), len(logits))["isc_splits"]
    return float(isc_features_to_metric(torch.as_tensor(logits), splits=splits, rng_seed=seed)[KEY_METRIC_ISC_MEAN])


def generation_scores(features: Mapping[str, Array], references: Mapping[str, NetworkReference], primary: str,
                      logits: Array | None = None, seed: int = 0) -> dict[str, float]:
    """features: network -> FID-layer features [N, D] of the generated images; `primary` is the FID network.
    -> {gfid, fd_<net> per network, fdr, precision, recall, fd_floor, fdinf, kid, is (with logits [N, K])}."""
    if primary not in references or set(features) != set(references):
        raise ValueError(f"features for {sorted(features)} and references for {sorted(references)} must match and "
                         f"include the FID network '{primary}'")
    scores: dict[str, float] = {}
    ratios = []
    for name, ref in references.items():
        scores[ref.metric] = fd_to_reference(features[name], ref)
        ratios.append(scores[ref.metric] / ref.val_fd)
    scores["gfid"] = scores[references[primary].metric]
    scores["fdr"] = float(np.mean(ratios))
    fid = references[primary]
    scores["fd_floor"] = fid.val_fd
    scores["fdinf"] = fd_infinity(features[primary], fid.train.mu, fid.train.sigma, fid.shrinkage, seed=seed).fd_inf
    scores["kid"] = kid(features[primary], fid.train.features, seed=seed)[0]
    scores["precision"], scores["recall"] = precision_recall(features[primary], references[primary].train.features,
                                                             seed)
    if logits is not None:
        scores["is"] = inception_score(logits)
    return scores


def scorer_scores(features: Array, reference: NetworkReference, seed: int = 0) -> dict[str, float]:
    """An extra scorer's view of generated features [N, D]: {gfid, fd_floor (FD(val, train) under the run's
    shrinkage), kid}, each read against its own floor (`gen/gfid@<scorer>`: the scorer's own target)."""
    return {"gfid": fd_to_reference(features, reference), "fd_floor": reference.val_fd,
            "kid": kid(features, reference.train.features, seed=seed)[0]}


def real_halves_check(train: ReferenceStats, val: ReferenceStats) -> dict[str, float]:
    """A scorer's real-data checks from its cached statistics: FD and KID between the even and odd rows of the
    validation features (two real halves: mostly FD's sample-size bias at small N) and the floor FD(val, train) with
    KID(val, train), under the small-sample shrinkage rule of their counts."""
    halves = val.features[0::2], val.features[1::2]
    dim = val.mu.shape[0]
    shrink = fd_shrinkage(dim, *map(len, halves))
    fd_halves = fd_between(*sample_moments(halves[0]), *sample_moments(halves[1]), shrink)
    return {"fd_real_halves": fd_halves, "kid_real_halves": kid(*halves)[0], "half_size": float(len(halves[1])),
            "fd_floor": fd_between(val.mu, val.sigma, train.mu, train.sigma, fd_shrinkage(dim, val.n, train.n)),
            "kid_floor": kid(val.features, train.features)[0]}
