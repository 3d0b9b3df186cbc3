"""Which tokenizer to train diffusion models on next: the one whose measured gFID is expected to change the study's
answer most.

The answer has two parts: the top-k set (lowest gFID over *all* tokenizers) and the Pearson r between a latent metric
and gFID over all tokenizers. Joint posterior draws of every unmeasured gFID (measured ones fixed) give both as random
quantities. Observing y_i reduces the variance of an answer A by Cov(A, y_i)² / Var(y_i) under a linear-Gaussian
approximation (the expected posterior-variance reduction of a best linear update), so the score of tokenizer i is

    top_weight  · Σ_j Cov(1[j ∈ top-k], y_i)² / Var(y_i) / Σ_j Var(1[j ∈ top-k])
  + corr_weight · Cov(r, y_i)² / Var(y_i) / Var(r)

each term the fraction of that answer's current uncertainty that measuring i is expected to remove. Draws come from a
seeded generator, so choices are deterministic for a seed; ties go to the lower index.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raysweep.search.proxy import Proxy, fit_proxy

EPS = 1e-12


@dataclass(frozen=True)
class AnswerPosterior:
    """The study's answer under the proxy. `draws` (S, N) gFID of every tokenizer (measured columns constant),
    `top_prob` (N,) P(tokenizer in top-k), `r_draws` (S,) metric-gFID Pearson r over all tokenizers."""

    draws: np.ndarray
    top_prob: np.ndarray
    r_draws: np.ndarray
    measured: np.ndarray  # (N,) bool

    def settled(self, confidence: float, r_sd: float) -> bool:
        """Every tokenizer is in or out of the top-k with probability >= confidence, and sd(r) <= r_sd."""
        decided = (self.top_prob >= confidence) | (self.top_prob <= 1.0 - confidence)
        return bool(decided.all() and self.r_draws.std() <= r_sd)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of the fixed vector x (N,) with each row of y (S, N)."""
    xc = x - x.mean()
    yc = y - y.mean(axis=1, keepdims=True)
    return (yc @ xc) / (np.sqrt((yc ** 2).sum(axis=1) * (xc @ xc)) + EPS)


def top_indicators(draws: np.ndarray, k: int) -> np.ndarray:
    """(S, N) float: 1 where the tokenizer is among the k lowest gFID of that draw (ties by index)."""
    order = np.argsort(draws, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(draws)
    np.put_along_axis(out, order, 1.0, axis=1)
    return out


def answer_posterior(proxy: Proxy, x_all: np.ndarray, measured: dict[int, float], metric: np.ndarray, top_k: int,
                     draws: int, rng: np.random.Generator) -> AnswerPosterior:
    """Posterior of the answer given the measured rows (`measured`: row index -> gFID)."""
    sample = proxy.draw(x_all, draws, rng)
    mask = np.zeros(len(x_all), dtype=bool)
    idx = np.fromiter(measured, dtype=int, count=len(measured))
    mask[idx] = True
    sample[:, idx] = np.fromiter(measured.values(), dtype=float, count=len(measured))
    return AnswerPosterior(sample, top_indicators(sample, top_k).mean(axis=0), _pearson_rows(metric, sample), mask)


def _explained(answer: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Σ_a Cov(answer_a, y_i)² / Var(y_i) for each column i of y (S, N); `answer` is (S, A)."""
    ac = answer - answer.mean(axis=0)
    yc = y - y.mean(axis=0)
    cov = ac.T @ yc / len(y)                     # (A, N)
    return (cov ** 2).sum(axis=0) / (yc.var(axis=0) + EPS)


def scores(post: AnswerPosterior, top_k: int, top_weight: float, corr_weight: float) -> np.ndarray:
    """Acquisition score per tokenizer (N,), -inf for measured ones."""
    top = top_indicators(post.draws, top_k)
    top_var = float(top.var(axis=0).sum())
    r = post.r_draws[:, None]
    out = np.zeros(post.draws.shape[1])
    if top_weight > 0 and top_var > EPS:
        out += top_weight * _explained(top, post.draws) / top_var
    if corr_weight > 0 and r.var() > EPS:
        out += corr_weight * _explained(r, post.draws) / float(r.var())
    return np.where(post.measured, -np.inf, out)


def pick(score: np.ndarray, count: int) -> list[int]:
    """The `count` best-scoring rows with a finite score, best first, ties to the lower index."""
    order = np.lexsort((np.arange(len(score)), -score))
    return [int(i) for i in order if np.isfinite(score[i])][:count]


def calibration_picks(x_all: np.ndarray, count: int, column: int | None = None) -> list[int]:
    """`count` distinct rows to measure first. With `column`: quantiles of that feature, evenly spread. Otherwise a
    sequential D-optimal design for the proxy: each pick is the row whose gFID the proxy, fitted on the picks so far,
    predicts least surely (gFID's values do not change that ranking, so none are needed). Unlike quantiles along the
    first principal component it also spreads the picks along the features that component ignores, so every
    feature's slope is measured from the first fit on. Deterministic (no draws; ties to the lower row)."""
    x = np.asarray(x_all, dtype=float)
    if column is not None:
        order = np.argsort(x[:, column], kind="stable")
        chosen: list[int] = []
        for q in np.linspace(0, len(order) - 1, min(count, len(order))):
            i = int(order[int(round(q))])
            if i not in chosen:
                chosen.append(i)
        return chosen
    chosen = []
    for _ in range(min(count, len(x))):
        scale = fit_proxy(x[chosen], np.zeros(len(chosen)), x).predict(x).scale
        scale[chosen] = -np.inf
        chosen.append(int(np.argmax(scale)))
    return chosen
