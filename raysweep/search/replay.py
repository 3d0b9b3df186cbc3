"""Replays of complete studies (every tokenizer measured): run the allocation as if the gFIDs were unknown, reveal
each chosen tokenizer's measured gFID, and record after every measurement what the study would answer.

    study = study_from_table(ra.load_study(uri, experiment), ["latent/velocity/viv"], "latent/velocity/viv")
    trace = replay(study, spec, seed=3)         # spec: a ProxyAllocation; its budget and stop rule are ignored

`synthetic_study` draws studies shaped like the paper's (86 tokenizers, metric-gFID r as asked).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raysweep.analysis.correlation import best_cfg_rows
from raysweep.analysis.tidy import DEFAULT_TARGET, require_columns, split_excluded
from raysweep.config.allocation import BudgetSpec, ProxyAllocation
from raysweep.search.allocation import Allocator


@dataclass(frozen=True)
class ReplayStudy:
    """A complete study: per tokenizer its proxy `features` (N, p), correlation `metric` (N,) and measured `gfid`."""

    name: str
    ids: tuple[str, ...]
    feature_names: tuple[str, ...]
    features: np.ndarray
    metric_name: str
    metric: np.ndarray
    gfid: np.ndarray

    @property
    def true_r(self) -> float:
        return float(np.corrcoef(self.metric, self.gfid)[0, 1])

    @property
    def best(self) -> str:
        return self.ids[int(np.argmin(self.gfid))]


@dataclass(frozen=True)
class ReplayTrace:
    """After the k-th measurement (index k-1): the best measured tokenizer, Pearson r on measured rows only, the
    proxy's posterior-mean r over all tokenizers, and whether the stop rule called the answer settled."""

    order: tuple[str, ...]
    best: tuple[str, ...]
    r_measured: np.ndarray
    r_posterior: np.ndarray
    settled: np.ndarray


def synthetic_study(r: float, seed: int, n: int = 86) -> ReplayStudy:
    """VIV-like metric with population Pearson r to gFID, and a second, useless feature (PSNR-like noise)."""
    rng = np.random.default_rng(seed)
    viv = rng.standard_normal(n)
    gfid = 6.0 + 1.5 * (r * viv + np.sqrt(1.0 - r * r) * rng.standard_normal(n))
    psnr = 25.0 + 2.0 * rng.standard_normal(n)
    features = np.column_stack([viv, psnr])
    return ReplayStudy(f"synthetic r={r}", tuple(f"tok{i:02d}" for i in range(n)),
                       ("latent/velocity/viv", "recon/psnr"), features, "latent/velocity/viv", viv, gfid)


def study_from_table(table: pd.DataFrame, features: Sequence[str], metric: str, name: str = "study",
                     target: str = DEFAULT_TARGET) -> ReplayStudy:
    """A tidy study table -> per-tokenizer features and gFID (each run at its best CFG, mean over backbones and
    seeds); tokenizers missing a feature or gFID are left out."""
    require_columns(table, ["tokenizer_id", *features, metric, target])
    ok, _ = split_excluded(table, target)
    best = best_cfg_rows(ok, target)
    cols = list(dict.fromkeys([*features, metric, target]))
    per_tok = best[["tokenizer_id", *cols]].assign(**{c: pd.to_numeric(best[c], errors="coerce") for c in cols})
    per_tok = per_tok.groupby("tokenizer_id", sort=True)[cols].mean().dropna()
    if len(per_tok) < 3:
        raise ValueError(f"{name}: {len(per_tok)} complete tokenizers; a replay needs at least 3")
    return ReplayStudy(name, tuple(map(str, per_tok.index)), tuple(features), per_tok[list(features)].to_numpy(),
                       metric, per_tok[metric].to_numpy(), per_tok[target].to_numpy())


def load_replay(tracking_uri: str, experiment: str, features: Sequence[str], metric: str) -> ReplayStudy:
    """Any finished study from its MLflow store, through `raysweep.analysis.load_study`."""
    from raysweep.analysis.loading import load_study

    return study_from_table(load_study(tracking_uri, experiment), features, metric, experiment)


def replay(study: ReplayStudy, spec: ProxyAllocation, seed: int) -> ReplayTrace:
    """Allocate every tokenizer, one at a time, in the order the proxy mode would (budget and stop rule off)."""
    spec = spec.model_copy(update={"budget": BudgetSpec(), "stop": spec.stop.model_copy(update={"never": True}),
                                   "acquisition": spec.acquisition.model_copy(update={"batch": 1})})
    allocator = Allocator.create(spec, list(study.ids), study.features, study.metric, seed=seed)
    truth = dict(zip(study.ids, study.gfid))
    state = allocator.start()
    order: list[str] = []
    best, r_measured, r_post, settled = [], [], [], []
    while True:
        state, batch = allocator.propose(state)
        if not batch:
            break
        for t in batch:
            state = allocator.record(state, t, float(truth[t]))
            order.append(t)
        ys = np.array([y for _, y in state.measured])
        rows = [allocator.index[t] for t, _ in state.measured]
        best.append(state.measured[int(np.argmin(ys))][0])
        r_measured.append(float(np.corrcoef(study.metric[rows], ys)[0, 1]) if len(ys) > 2 else np.nan)
        post = allocator.posterior(state)
        r_post.append(float(post.r_draws.mean()))
        settled.append(post.settled(spec.stop.confidence, spec.stop.r_sd))
    return ReplayTrace(tuple(order), tuple(best), np.array(r_measured), np.array(r_post), np.array(settled))
