"""Semantic separability of pooled latents (METRICS.md §2): LNC@k and linear-probe accuracy, higher is better.

Each image becomes one C-vector, the mean of its latent over foreground positions (the whole image if it has no
mask or an empty one). Pooling commutes with the per-channel affine standardisation, so the state keeps raw pooled
vectors and per-channel moments; finalize standardises, sorts rows by sample_id (a canonical order, so results do
not depend on how the data was split) and centres the features.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from raysweep.metrics.base import Accumulator, Batch, State, Value

KNN_BLOCK_ELEMENTS = 1 << 24  # rows per similarity block = this // N: bounds the [rows, N] block's memory
log = logging.getLogger(__name__)


def pool_features(latent: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """latent [B,C,H,W], mask [B,H,W] bool | None -> foreground means [B,C] float64 (whole image if no fg)."""
    b, c, h, w = latent.shape
    x = np.asarray(latent).reshape(b, c, h * w)
    if mask is None:
        return x.mean(axis=2, dtype=np.float64)
    weight = mask.reshape(b, h * w).astype(x.dtype)
    weight[weight.sum(axis=1) == 0] = 1.0  # no foreground: pool the whole image
    weight /= weight.sum(axis=1, keepdims=True)
    return (x @ weight[:, :, None])[..., 0].astype(np.float64)  # (B, C): one batched GEMV


def knn_indices(features: np.ndarray, k: int) -> np.ndarray:
    """Each row's k cosine nearest neighbours (self excluded), nearest first: features [N, D] -> [N, k] int.

    Float32 unit vectors, similarity blocks of rows (one GEMM each) and torch.topk, which keeps the k best of
    each row without sorting the rest."""
    import torch

    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = torch.from_numpy((features / np.where(norms > 0, norms, 1.0)).astype(np.float32))
    n = len(unit)
    step = max(1, KNN_BLOCK_ELEMENTS // n)
    out = []
    for start in range(0, n, step):
        rows = torch.arange(start, min(start + step, n))
        sims = unit[rows] @ unit.T  # (rows, N)
        sims[torch.arange(len(rows)), rows] = -torch.inf  # exclude self
        out.append(torch.topk(sims, k, dim=1).indices.numpy())
    return np.concatenate(out) if out else np.empty((0, k), np.int64)


def knn_label_agreement(features: np.ndarray, labels: np.ndarray, k: int,
                        neighbours: np.ndarray | None = None) -> float:
    """Mean fraction of each row's k cosine nearest neighbours (self excluded) that share its label; NaN when
    N <= k. features [N, D], labels [N]; `neighbours` [N, >= k] from `knn_indices` saves the search."""
    if len(features) <= k:
        return float("nan")
    neighbours = knn_indices(features, k) if neighbours is None else neighbours[:, :k]
    return float((labels[neighbours] == labels[:, None]).mean())


def labels_undefined(labels: np.ndarray) -> str | None:
    """Why a label-based metric is undefined on these labels (None if it is defined): one class only (agreement is
    1 and a probe has nothing to tell apart), or a class of a single latent (it has no same-class neighbour and
    cannot be both trained and held out)."""
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        return f"{len(labels)} latent(s) all in one class ({classes[0] if len(classes) else '-'})"
    if counts.min() < 2:
        single = classes[counts < 2]
        return f"class(es) {single[:5].tolist()}{' ...' if len(single) > 5 else ''} hold a single latent"
    return None


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask [N]: per class, round(test_fraction·n_k) rows drawn by a seeded permutation, keeping at
    least one training row (classes of one sample are train-only)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        n_test = min(int(round(test_fraction * len(rows))), len(rows) - 1)
        test[rng.permutation(rows)[:n_test]] = True
    return test


class _PooledFeatures(Accumulator):
    """Shared state and finalize preparation of the pooled-feature metrics."""

    perspective = "semantic"

    def __init__(self, use_mask: bool = True) -> None:
        self.use_mask = use_mask

    def summarise(self, batch: Batch) -> State:
        mask = batch.fg_mask if self.use_mask else None
        features = batch.derived(f"pooled/{mask is not None}", lambda: pool_features(batch.latent, mask))
        return {"shape": batch.shape, "channels": batch.channels, "ids": [batch.sample_id],
                "labels": [batch.label], "features": [features]}

    def features(self, state: State) -> tuple[np.ndarray, np.ndarray]:
        """Standardised, centred features [N, C] and labels [N], rows in sample_id order."""
        order = np.argsort(np.concatenate(state["ids"]), kind="stable")
        features = np.concatenate(state["features"])[order] / state["channels"].std
        return features - features.mean(axis=0), np.concatenate(state["labels"])[order]


class LatentNeighbourConsistency(_PooledFeatures):
    """LNC@k: label agreement of cosine k-nearest neighbours of the pooled, centred features."""

    name = "lnc"

    def __init__(self, ks: tuple[int, ...] | list[int] = (5, 10), use_mask: bool = True) -> None:
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"lnc: ks must be a non-empty list of positive integers, got {list(ks)}")
        super().__init__(use_mask)
        self.ks = tuple(int(k) for k in ks)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(f"lnc@{k}") for k in self.ks)

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {k: True for k in self.keys}

    def params(self, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
        return {"ks": list(self.ks), "use_mask": self.use_mask}

    def _finalize(self, state: State) -> dict[str, Value]:
        features, labels = self.features(state)
        usable = [k for k in self.ks if k < len(features)]
        if len(usable) < len(self.ks):
            log.warning("latent/semantic/lnc: %d latent(s) are too few for k = %s; those values are NaN",
                        len(features), sorted(set(self.ks) - set(usable)))
        why = labels_undefined(labels)
        if why and usable:
            log.warning("latent/semantic/lnc: NaN, %s (label agreement is then fixed by the labels, not the latents)",
                        why)
            return dict.fromkeys(self.keys, float("nan"))
        neighbours = knn_indices(features, max(usable)) if usable else None
        return {key: knn_label_agreement(features, labels, k, neighbours) for key, k in zip(self.keys, self.ks)}


class LinearProbe(_PooledFeatures):
    """Held-out accuracy of multinomial logistic regression (scikit-learn, lbfgs, L2 with strength 1/C) on the
    pooled, standardised features; the split is stratified by class with a fixed seed over sample_id order."""

    name = "linear_probe"

    def __init__(self, test_fraction: float = 0.2, seed: int = 0, c: float = 1.0, max_iter: int = 1000,
                 use_mask: bool = True) -> None:
        if not 0.0 < test_fraction < 1.0 or c <= 0 or max_iter < 1:
            raise ValueError(f"linear_probe: need 0 < test_fraction < 1, c > 0, max_iter >= 1; got "
                             f"test_fraction={test_fraction}, c={c}, max_iter={max_iter}")
        super().__init__(use_mask)
        self.test_fraction, self.seed, self.c, self.max_iter = test_fraction, seed, c, max_iter

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key("linear_probe"),)

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {self.key("linear_probe"): True}

    def params(self, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
        return {"classifier": "sklearn LogisticRegression (multinomial, lbfgs)", "test_fraction": self.test_fraction,
                "seed": self.seed, "c": self.c, "max_iter": self.max_iter, "use_mask": self.use_mask}

    def _finalize(self, state: State) -> dict[str, Value]:
        from sklearn.linear_model import LogisticRegression

        features, labels = self.features(state)
        why = labels_undefined(labels)
        if why:
            log.warning("latent/semantic/linear_probe: NaN, %s (a stratified held-out split needs two or more "
                        "classes of two or more latents)", why)
            return {self.key("linear_probe"): float("nan")}
        test = stratified_split(labels, self.test_fraction, self.seed)
        if not test.any() or len(np.unique(labels[~test])) < 2:
            log.warning("latent/semantic/linear_probe: NaN, a held-out split of %d latent(s) in %d class(es) leaves "
                        "no test rows or fewer than 2 training classes", len(labels), len(np.unique(labels)))
            return {self.key("linear_probe"): float("nan")}
        probe = LogisticRegression(C=self.c, max_iter=self.max_iter)
        probe.fit(features[~test], labels[~test])
        return {self.key("linear_probe"): float(probe.score(features[test], labels[test]))}
