"""Complete studies (every tokenizer measured) as replay inputs: per tokenizer its proxy features, the correlation
metric, the measured gFID, its diffusion cost and an optional cheap-tier gFID (`policies.py` orders them,
`comparison.py` scores the orders).

    study = study_from_table(ra.load_study(uri, experiment), ["latent/velocity/viv"], "latent/velocity/viv")
    part = subsample(study, 0.8, rng)           # replays vary by resampling tokenizer subsets

`synthetic_study` draws studies shaped like the paper's (86 tokenizers, metric-gFID r as asked).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from raysweep.analysis.correlation import best_cfg_rows
from raysweep.analysis.tidy import DEFAULT_TARGET, require_columns, split_excluded
from raysweep.config.errors import ConfigError

if TYPE_CHECKING:
    from raysweep.analysis.external import TableColumns


@dataclass(frozen=True)
class ReplayStudy:
    """A complete study: per tokenizer its proxy `features` (N, p) with `better` (p,) their declared directions
    (True = higher means a better latent), correlation `metric` (N,), measured `gfid`, diffusion `cost` (N,; None:
    equal) and `cheap` (N,) a cheap-tier gFID (None: no cheap tier)."""

    name: str
    ids: tuple[str, ...]
    feature_names: tuple[str, ...]
    features: np.ndarray
    metric_name: str
    metric: np.ndarray
    gfid: np.ndarray
    better: tuple[bool, ...]
    cost: np.ndarray | None = None
    cheap: np.ndarray | None = None

    @property
    def costs(self) -> np.ndarray:
        return np.ones(len(self.ids)) if self.cost is None else self.cost

    @property
    def true_r(self) -> float:
        return float(np.corrcoef(self.metric, self.gfid)[0, 1])

    @property
    def best(self) -> str:
        return self.ids[int(np.argmin(self.gfid))]

    def take(self, rows: Sequence[int] | np.ndarray) -> ReplayStudy:
        """The study restricted to `rows` (in that order)."""
        rows = np.asarray(rows, dtype=int)
        return replace(self, ids=tuple(self.ids[i] for i in rows), features=self.features[rows],
                       metric=self.metric[rows], gfid=self.gfid[rows],
                       cost=None if self.cost is None else self.cost[rows],
                       cheap=None if self.cheap is None else self.cheap[rows])


def subsample(study: ReplayStudy, fraction: float, rng: np.random.Generator) -> ReplayStudy:
    """A random `fraction` of the tokenizers (at least 3, without replacement, table order kept): a replay of a real
    table varies with the tokenizers it happened to have, not only with the allocator's seed."""
    n = len(study.ids)
    m = min(n, max(3, int(round(fraction * n))))
    return study.take(np.sort(rng.choice(n, size=m, replace=False)))


def synthetic_study(r: float, seed: int, n: int = 86, cheap_r: float | None = None) -> ReplayStudy:
    """VIV-like metric (lower is better) with population Pearson r to gFID, and a second, useless feature (PSNR-like
    noise); `cheap_r`: a cheap-tier gFID with that population Pearson r to the measured gFID."""
    rng = np.random.default_rng(seed)
    viv = rng.standard_normal(n)
    gfid = 6.0 + 1.5 * (r * viv + np.sqrt(1.0 - r * r) * rng.standard_normal(n))
    psnr = 25.0 + 2.0 * rng.standard_normal(n)
    features = np.column_stack([viv, psnr])
    cheap = None
    if cheap_r is not None:
        z = (gfid - 6.0) / 1.5
        cheap = 9.0 + 2.0 * (cheap_r * z + np.sqrt(1.0 - cheap_r * cheap_r) * rng.standard_normal(n))
    name = f"synthetic r={r}" + (f", cheap tier r={cheap_r}" if cheap_r is not None else "")
    return ReplayStudy(name, tuple(f"tok{i:02d}" for i in range(n)), ("latent/velocity/viv", "recon/psnr"),
                       features, "latent/velocity/viv", viv, gfid, (False, True), cheap=cheap)


def study_from_table(table: pd.DataFrame, features: Sequence[str], metric: str, name: str = "study",
                     target: str = DEFAULT_TARGET, directions: Mapping[str, bool] | None = None) -> ReplayStudy:
    """A tidy study table -> per-tokenizer features and gFID (each run at its best CFG, mean over backbones and
    seeds); tokenizers missing a feature or gFID are left out. `directions` (True = higher is better; default all
    True) orient the single-feature policies."""
    require_columns(table, ["tokenizer_id", *features, metric, target])
    ok, _ = split_excluded(table, target)
    best = best_cfg_rows(ok, target)
    cols = list(dict.fromkeys([*features, metric, target]))
    per_tok = best[["tokenizer_id", *cols]].assign(**{c: pd.to_numeric(best[c], errors="coerce") for c in cols})
    per_tok = per_tok.groupby("tokenizer_id", sort=True)[cols].mean().dropna()
    if len(per_tok) < 3:
        raise ValueError(f"{name}: {len(per_tok)} complete tokenizers; a replay needs at least 3")
    better = tuple(bool((directions or {}).get(f, True)) for f in features)
    return ReplayStudy(name, tuple(map(str, per_tok.index)), tuple(features), per_tok[list(features)].to_numpy(),
                       metric, per_tok[metric].to_numpy(), per_tok[target].to_numpy(), better)


def load_replay(tracking_uri: str, experiment: str, features: Sequence[str], metric: str,
                directions: Mapping[str, bool] | None = None) -> ReplayStudy:
    """Any finished study from its MLflow store, through `raysweep.analysis.load_study`."""
    from raysweep.analysis.loading import load_study

    return study_from_table(load_study(tracking_uri, experiment), features, metric, experiment,
                            directions=directions)


def study_from_external(frame: pd.DataFrame, columns: TableColumns, features: Sequence[str], source: str,
                        cost: str | None = None, cheap: str | None = None) -> tuple[ReplayStudy, list[str]]:
    """Any results table (`raysweep replay --table`): rows sharing an id are averaged; the correlation metric is
    the first feature, directions follow `--lower-is-better` (see `raysweep.analysis.external`). Returns the study
    and the ids left out for a missing value. `features` empty: the table's metric columns."""
    from raysweep.analysis.external import check_columns, metric_directions_of, require_table_columns, tidy_name

    for option, column in (("--cost", cost), ("--cheap", cheap)):
        if column is not None:
            require_table_columns(frame, [column], option, source)
    features = check_columns(frame, columns, source, exclude=[c for c in (cost, cheap) if c], chosen=features,
                             option="--features")
    cols = list(dict.fromkeys([*features, columns.target, *(c for c in (cost, cheap) if c)]))
    numbers = frame[cols].apply(pd.to_numeric, errors="coerce").assign(_id=frame[columns.id].astype(str))
    per_tok = numbers.groupby("_id", sort=True)[cols].mean()
    complete = per_tok.dropna()
    if len(complete) < 3:
        raise ConfigError(source, "--table", f"{len(complete)} tokenizers with every value of {cols}; a replay "
                                             "needs at least 3")
    directions = metric_directions_of(features, columns)
    study = ReplayStudy(Path(source).stem, tuple(complete.index), tuple(features), complete[features].to_numpy(),
                        features[0], complete[features[0]].to_numpy(), complete[columns.target].to_numpy(),
                        tuple(directions[tidy_name(f)] for f in features),
                        cost=complete[cost].to_numpy() if cost else None,
                        cheap=complete[cheap].to_numpy() if cheap else None)
    return study, sorted(set(per_tok.index) - set(complete.index))
