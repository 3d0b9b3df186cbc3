"""Can this study answer its question? Seed noise of gFID, correlations over tokenizers, power, chance levels.

A study's correlations are only as good as its target: if two diffusion seeds of one tokenizer disagree as much as
two tokenizers do, no latent metric can predict gFID. This module measures that, in plain numpy:

* seed noise: the one-way random-effects intraclass correlation ICC(1) of gFID (tokenizers = groups, seeds =
  repeats; Shrout & Fleiss 1979), with k0 for unequal seed counts, and the reliability of the seed mean by
  Spearman-Brown; the largest |r| any metric can reach against the seed-mean gFID is sqrt(reliability);
* correlations over tokenizers (the seed-mean gFID; rows of one tokenizer are not independent), each with a
  percentile-bootstrap CI over tokenizers and the Fisher-z interval beside it;
* power: the smallest |r| a two-sided Fisher-z test at alpha = 0.05 detects with power 0.8 given n tokenizers,
  |r| >= tanh((z_{0.975} + z_{0.8}) / sqrt(n - 3));
* chance levels of the label metrics, from the class counts of the split they are computed on: LNC@k's chance is
  the probability that a random other image shares the label, sum_c n_c (n_c - 1) / (N (N - 1)), the linear probe's
  is the majority share max_c n_c / N; a value within 3 binomial standard errors sqrt(p (1 - p) / N) of its chance
  level is flagged.

`measure_noise` returns the numbers (`NoiseReport`), an HTML fragment and report sections / warnings.
"""
from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

from raysweep.analysis.correlation_methods import pearson_weighted
from raysweep.tracking.keys import TOKENIZER_SEED_TAG

ALPHA = 0.05          # two-sided test level of the power line
POWER = 0.8
CHANCE_SE = 3.0       # a label metric within this many binomial standard errors of chance is flagged
KEY_METRICS = ("latent/velocity/viv", "latent/semantic/lnc@5", "latent/spatial/srss", "latent/smoothness/sec@0.5")
TARGET = "gen/gfid"
CLASS_COUNTS = "dataset/val_class_counts"  # table column "n_0,n_1,...": set by the analysis stage when known
BatchStatistic = Callable[[np.ndarray], np.ndarray]  # a batch of samples (B, ...) -> one value each (B,)


def icc_rows(values: np.ndarray) -> np.ndarray:
    """ICC(1) of one-way random effects for each sample of a batch, so a bootstrap is one array operation:
    `values[b, i]` holds group i's repeats in sample b, NaN-padded to a common length; (B, g, k) -> (B,).

    ICC(1) = (MSB - MSW) / (MSB + (k0 - 1) MSW), with k0 = (N - sum n_i^2 / N) / (g - 1) the usual mean group size
    for unequal groups (= k when balanced); groups without a value are ignored; NaN where undefined."""
    finite = np.isfinite(values)
    sizes = finite.sum(axis=2).astype(float)  # (B, g)
    sums = np.where(finite, values, 0.0).sum(axis=2)
    n, g = sizes.sum(axis=1), (sizes > 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / sizes
        grand = sums.sum(axis=1) / n
        msb = np.nansum(sizes * (means - grand[:, None]) ** 2, axis=1) / (g - 1)
        msw = (np.where(finite, values - means[..., None], 0.0) ** 2).sum(axis=(1, 2)) / (n - g)
        k0 = (n - (sizes**2).sum(axis=1) / n) / (g - 1)
        denominator = msb + (k0 - 1) * msw
        icc = (msb - msw) / denominator
    return np.where((g >= 2) & (n - g >= 1) & (denominator > 0), icc, np.nan)


def _padded(groups: Sequence[np.ndarray]) -> np.ndarray:
    """Groups of unequal length as rows of one NaN-padded (g, k) array."""
    out = np.full((len(groups), max((len(x) for x in groups), default=0)), np.nan)
    for i, x in enumerate(groups):
        out[i, :len(x)] = x
    return out


def icc_oneway(groups: Sequence[np.ndarray]) -> float:
    """ICC(1) of one sample of groups (see `icc_rows`); groups with no value are ignored."""
    return float(icc_rows(_padded([np.asarray(x, float) for x in groups])[None])[0])


def spearman_brown(icc: float, k: float) -> float:
    """Reliability of the mean of k repeats whose single-repeat reliability is `icc`."""
    return float(k * icc / (1 + (k - 1) * icc))


def bootstrap_ci(data: np.ndarray, statistic: BatchStatistic, n_boot: int = 1000, ci: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI over resamples of the first axis of `data` (NaN resamples dropped). `statistic` maps
    the stacked resamples, shape (n_boot, *data.shape), to one value each: all of them in one array operation."""
    rng = np.random.default_rng(seed)
    values = statistic(data[rng.integers(0, len(data), size=(n_boot, len(data)))])
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = 100 * (1 - ci) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def detectable_r(n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |r| that a two-sided Fisher-z test at `alpha` detects with probability `power` from n pairs."""
    if n <= 3:
        return float("nan")
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return float(np.tanh(z / np.sqrt(n - 3)))


def tokenizers_needed(r: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """n for which `detectable_r(n) <= |r|`: ceil(((z_{1-alpha/2} + z_power) / atanh|r|)^2 + 3)."""
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return int(np.ceil((z / np.arctanh(abs(r))) ** 2 + 3))


def fisher_ci(r: float, n: int, ci: float = 0.95) -> tuple[float, float]:
    """The Fisher-z interval tanh(atanh r -+ z / sqrt(n - 3)): the parametric check on a bootstrap CI, which
    with few tokenizers comes out too narrow."""
    if n <= 3 or not np.isfinite(r):
        return float("nan"), float("nan")
    half = NormalDist().inv_cdf(0.5 + ci / 2) / np.sqrt(n - 3)
    z = np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def lnc_chance(class_counts: Sequence[int]) -> float:
    """Expected LNC@k of features that carry no label information: P(a random other image shares the label)."""
    c = np.asarray(class_counts, float)
    n = c.sum()
    return float((c * (c - 1)).sum() / (n * (n - 1)))


def probe_chance(class_counts: Sequence[int]) -> float:
    """Accuracy of the best label-blind classifier (always the majority class)."""
    c = np.asarray(class_counts, float)
    return float(c.max() / c.sum())


def chance_levels(class_counts: Sequence[int]) -> dict[str, float]:
    """Chance level per label metric key (LNC at every k: the chance does not depend on k)."""
    lnc, probe = lnc_chance(class_counts), probe_chance(class_counts)
    return {"latent/semantic/lnc@": lnc, "latent/semantic/linear_probe": probe}


def _pearson_rows(xy: np.ndarray) -> np.ndarray:
    """Pearson r of each sample of pairs, (B, n, 2) -> (B,); NaN where a variable is constant."""
    return pearson_weighted(xy[..., 0], xy[..., 1], np.ones(xy.shape[:2]))


@dataclass(frozen=True)
class NoiseReport:
    """The numbers of the measurement section; `html()` and `sections()` / `notes()` render them."""

    n_tokenizers: int
    seeds_per_tokenizer: float         # k0 (the mean seed count, for unequal counts)
    icc: float                         # share of single-run gFID variance that is between tokenizers
    icc_ci: tuple[float, float]
    reliability: float                 # of the seed-mean gFID (Spearman-Brown)
    seed_sd: float                     # pooled within-tokenizer SD of gFID
    tokenizer_sd: float                # SD of the tokenizers' seed-mean gFID
    detectable_r: float                # at ALPHA, POWER with n_tokenizers
    correlations: pd.DataFrame         # metric, r, ci_low, ci_high, ci_width, fisher_low, fisher_high, n
    chance: pd.DataFrame = field(default_factory=pd.DataFrame)  # metric, value, chance, at_chance

    @property
    def too_small(self) -> bool:
        """True when the study cannot conclude: no detectable |r| below 0.8, or seed noise as large as the signal."""
        return not (self.detectable_r <= 0.8) or not (self.icc >= 0.5)

    def notes(self) -> list[str]:
        """Plain warnings for the top of the report."""
        out = []
        if self.too_small:
            seeds = (f"the ICC of gFID across seeds is {self.icc:.2f}" if np.isfinite(self.icc) else
                     "seed noise is unmeasured (one diffusion seed per tokenizer)")
            out.append(f"Too small to conclude: with {self.n_tokenizers} tokenizers only |r| >= "
                       f"{self.detectable_r:.2f} is detectable (Fisher z, alpha {ALPHA}, power {POWER}) and {seeds}. "
                       f"More tokenizers are needed for an answer (experiments/benchmark.yaml's first design, "
                       f"24 tokenizers: experiments/results/first-design/).")
        for row in self.chance.itertuples(index=False):
            if row.at_chance:
                out.append(f"{row.metric} sits at chance level ({row.value:.3f} vs {row.chance:.3f} for labels "
                           f"that carry no information): it cannot rank tokenizers here.")
        return out

    def summary(self) -> pd.DataFrame:
        rows = [("tokenizers", self.n_tokenizers), ("seeds per tokenizer (k0)", self.seeds_per_tokenizer),
                ("ICC(1) of gFID", self.icc), ("ICC 95% CI low", self.icc_ci[0]), ("ICC 95% CI high", self.icc_ci[1]),
                ("reliability of the seed mean", self.reliability), ("seed-to-seed SD of gFID", self.seed_sd),
                ("between-tokenizer SD of mean gFID", self.tokenizer_sd),
                (f"detectable |r| (alpha {ALPHA}, power {POWER})", self.detectable_r)]
        return pd.DataFrame(rows, columns=["quantity", "value"])

    def sections(self) -> list[tuple[str, pd.DataFrame, str]]:
        """(title, table, note) triples for the report."""
        power = (f"With {self.n_tokenizers} tokenizers, |r| >= {self.detectable_r:.2f} is detectable at 95% "
                 f"(two-sided Fisher z test, alpha {ALPHA}, power {POWER}).")
        parts = [("Measurement: seed noise and power", self.summary(),
                  f"ICC(1): share of gFID variance between tokenizers (1 = seeds agree). {power} No metric can "
                  f"exceed |r| = sqrt(reliability) = {np.sqrt(max(self.reliability, 0)):.2f} against the seed "
                  f"mean."),
                 ("Measurement: correlations over tokenizers", self.correlations,
                  "Pearson r of the sign-normalised metric with the seed-mean gFID, one row per tokenizer; CI: "
                  "percentile bootstrap over tokenizers (fisher_low/high: the Fisher-z interval, wider and more "
                  "honest when there are few tokenizers).")]
        if len(self.chance):
            parts.append(("Measurement: chance levels", self.chance,
                          f"Chance = the value of label-blind features; flagged within {CHANCE_SE:g} binomial SE."))
        return parts

    def html(self) -> str:
        """A self-contained HTML fragment (headings, warnings, tables) for any report layout."""
        def table(frame: pd.DataFrame) -> str:
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                           for row in frame.itertuples(index=False))
            return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

        warn = "".join(f'<p class="warn">{html.escape(n)}</p>' for n in self.notes())
        return warn + "".join(f"<h2>{html.escape(t)}</h2><p class=\"note\">{html.escape(n)}</p>{table(f)}"
                              for t, f, n in self.sections())


def _cell(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def _chance_frame(means: pd.DataFrame, class_counts: Sequence[int]) -> pd.DataFrame:
    levels, n = chance_levels(class_counts), float(np.sum(class_counts))
    rows = []
    for metric in means.columns:
        prefix = next((p for p in levels if metric.startswith(p)), None)
        if prefix is None:
            continue
        value, chance = float(means[metric].mean()), levels[prefix]
        se = np.sqrt(chance * (1 - chance) / n)
        rows.append((metric, value, chance, bool(value <= chance + CHANCE_SE * se)))
    return pd.DataFrame(rows, columns=["metric", "value", "chance", "at_chance"])


def measure_noise(table: pd.DataFrame, directions: Mapping[str, bool] | None = None,
                  class_counts: Sequence[int] | None = None, metrics: Sequence[str] = KEY_METRICS,
                  n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> NoiseReport:
    """The measurement section from a study table with one row per diffusion run (columns `tokenizer_id`, `seed`,
    the target `gen/gfid` and latent metrics). `directions` (True = higher is better) sign-normalise the metrics,
    as the report's correlations do (default: the metric registry's); `class_counts` of the validation split
    (default: the table's `CLASS_COUNTS` column, if any) enable the chance levels. A table without those columns
    gives an empty report (n_tokenizers 0). With several backbones the unit is (tokenizer, backbone): seeds repeat
    within it."""
    if directions is None:
        from raysweep.metrics.registry import metric_directions

        directions = metric_directions()
    if class_counts is None and CLASS_COUNTS in table.columns and table[CLASS_COUNTS].notna().any():
        class_counts = [int(c) for c in str(table[CLASS_COUNTS].dropna().iloc[0]).split(",")]
    columns = {"tokenizer_id", "seed", TARGET}
    unit = ["tokenizer_id", "backbone"] if "backbone" in table.columns else ["tokenizer_id"]
    replicate = [c for c in (TOKENIZER_SEED_TAG, "seed") if c in table.columns]  # tokenizer and diffusion seeds
    runs = table.dropna(subset=[TARGET]).drop_duplicates([*unit, *replicate]) if columns <= set(
        table.columns) else pd.DataFrame(columns=sorted(columns))
    groups = [g[TARGET].to_numpy(float) for _, g in runs.groupby(unit, sort=True)] if len(runs) else []
    sizes = np.array([len(g) for g in groups], float)
    n_tok, n_runs = len(groups), sizes.sum()
    k0 = float((n_runs - (sizes**2).sum() / n_runs) / (n_tok - 1)) if n_tok > 1 else float("nan")
    icc = icc_oneway(groups)
    icc_ci = bootstrap_ci(_padded(groups), icc_rows, n_boot, ci, seed)
    within = [g - g.mean() for g in groups if len(g) > 1]
    dof = sum(len(w) - 1 for w in within)
    seed_sd = float(np.sqrt(sum((w**2).sum() for w in within) / dof)) if dof else float("nan")
    means = runs.groupby(unit, sort=True).mean(numeric_only=True) if len(runs) else pd.DataFrame()
    rows = []
    for metric in metrics:
        if metric not in means.columns:
            continue
        sign = 1.0 if directions.get(metric, True) else -1.0
        xy = np.column_stack([sign * means[metric].to_numpy(float), means[TARGET].to_numpy(float)])
        xy = xy[np.isfinite(xy).all(axis=1)]
        lo, hi = bootstrap_ci(xy, _pearson_rows, n_boot, ci, seed) if len(xy) >= 4 else (float("nan"), float("nan"))
        r = float(_pearson_rows(xy[None])[0]) if len(xy) >= 3 else float("nan")
        rows.append((metric, r, lo, hi, hi - lo, *fisher_ci(r, len(xy), ci), len(xy)))
    correlations = pd.DataFrame(rows, columns=["metric", "r", "ci_low", "ci_high", "ci_width", "fisher_low",
                                               "fisher_high", "n"])
    chance = _chance_frame(means, class_counts) if class_counts is not None and len(means) else pd.DataFrame(
        columns=["metric", "value", "chance", "at_chance"])
    return NoiseReport(
        n_tokenizers=n_tok, seeds_per_tokenizer=k0, icc=icc, icc_ci=icc_ci,
        reliability=spearman_brown(icc, k0) if np.isfinite(icc) and np.isfinite(k0) else float("nan"),
        seed_sd=seed_sd, tokenizer_sd=float(means[TARGET].std(ddof=1)) if n_tok > 1 else float("nan"),
        detectable_r=detectable_r(n_tok), correlations=correlations, chance=chance)
