"""VIV beyond class conditioning (METRICS.md §1, last items): the data are the *mixture* of the class Gaussians.

Unconditional (or text-conditioned) flow matching sees `x1 ~ Σ_k π_k N(μ_k, Σ_k)` with no label, so
`E[v|x_t]` mixes the per-component conditional means with posterior weights `w_k(x_t)` and has no closed form.
We estimate `E‖v − E[v|x_t]‖² = E‖x1 − E[x1|x_t]‖²/(1−t)²` by Monte Carlo over `(k, x1, x0, t)` (our choice; the
paper only names it): t is stratified over (0, 1) for the integrated value and fixed on the grid for the curve.
Each component is the class's Kronecker fit (`kronecker_spectrum`), so every posterior is computed in its own
eigenbasis `Q_c ⊗ Q_s` with only C×C and P×P products. With one component this is the class-conditional VIV.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from raysweep.metrics.base import State, Value
from raysweep.metrics.velocity import ITERATIONS, RIDGE, TOL, VelocityAmbiguity, kronecker_spectrum

CHUNK_DRAWS = 128  # draws per vectorised step: bounds the [K, chunk, C, P] posterior means


@dataclass(frozen=True)
class Component:
    """One Gaussian: weight π, mean μ [C,P], covariance Q_c diag-outer(λ_c, λ_s) Q_sᵀ as eigen-pairs."""

    weight: float
    mean: np.ndarray
    lam: np.ndarray  # [C, P] = outer(λ_c, λ_s)
    q_c: np.ndarray  # [C, C]
    q_s: np.ndarray  # [P, P]

    def to_eigen(self, y: np.ndarray) -> np.ndarray:
        """[S, C, P] -> Q_cᵀ y Q_s."""
        return np.einsum("cd,sdp,pq->scq", self.q_c, y, self.q_s, optimize=True)

    def from_eigen(self, y: np.ndarray) -> np.ndarray:
        """[S, C, P] -> Q_c y Q_sᵀ."""
        return np.einsum("cd,sdp,qp->scq", self.q_c, y, self.q_s, optimize=True)


def mixture_residuals(components: list[Component], t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`draw_residuals` over t [S] in chunks of CHUNK_DRAWS: [S]."""
    return np.concatenate([draw_residuals(components, t[i:i + CHUNK_DRAWS], rng)
                           for i in range(0, len(t), CHUNK_DRAWS)])


def draw_residuals(components: list[Component], t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-dimension ‖x1 − E[x1|x_t]‖²/(1−t)² for one draw (k, x1, x0) at each time t [S] in (0, 1): [S].

    Component j's posterior: with r = x_t − tμ_j in its eigenbasis and κ = (1−t)² + t²λ,
    log p_j(x_t) = log π_j − ½ Σ (r²/κ + log κ) and E_j[x1|x_t] = μ_j + Q (tλ/κ · r) Qᵀ.
    """
    s = len(t)
    weights = np.array([c.weight for c in components])
    picks = rng.choice(len(components), size=s, p=weights / weights.sum())
    shape = components[0].mean.shape
    x1 = np.empty((s, *shape))
    for j, comp in enumerate(components):
        rows = picks == j
        eps = rng.standard_normal((int(rows.sum()), *shape))
        x1[rows] = comp.mean + comp.from_eigen(np.sqrt(comp.lam) * eps)
    tt = t[:, None, None]
    x_t = tt * x1 + (1.0 - tt) * rng.standard_normal(x1.shape)
    logp, means = [], []
    for comp in components:
        kap = np.square(1.0 - tt) + np.square(tt) * comp.lam  # (S, C, P)
        r = comp.to_eigen(x_t - tt * comp.mean)
        logp.append(np.log(comp.weight) - 0.5 * (np.square(r) / kap + np.log(kap)).sum(axis=(1, 2)))
        means.append(comp.mean + comp.from_eigen(tt * comp.lam / kap * r))
    logp_arr = np.array(logp)  # (K, S)
    post = np.exp(logp_arr - logp_arr.max(axis=0))
    post /= post.sum(axis=0)
    posterior_mean = np.einsum("ks,kscp->scp", post, np.array(means))
    return np.square(x1 - posterior_mean).sum(axis=(1, 2)) / np.square(1.0 - t) / np.prod(shape)


class MixtureVelocityAmbiguity(VelocityAmbiguity):
    """Monte-Carlo VIV of the class mixture (unconditional studies), with its standard error and curve.

    Same state as `viv`; components are the classes with at least `min_class_size` samples, weighted by count,
    with means and Kronecker covariances of the standardised latents. `samples` draws give the integrated value
    (stratified t), `curve_samples` draws per grid time give the curve. Seeded: any split gives the same draws.
    """

    name = "viv_mixture"

    def __init__(self, samples: int = 1024, curve_samples: int = 64, seed: int = 0, iterations: int = ITERATIONS,
                 ridge: float = RIDGE, t_points: int = 20, t_max: float = 0.95, min_class_size: int = 4,
                 tol: float = TOL) -> None:
        if samples < 2 or curve_samples < 1:
            raise ValueError(f"{self.name}: need samples >= 2 and curve_samples >= 1; got samples={samples}, "
                             f"curve_samples={curve_samples}")
        super().__init__(iterations, ridge, t_points, t_max, min_class_size, tol)
        self.samples, self.curve_samples, self.seed = samples, curve_samples, seed

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(m) for m in ("viv_mixture", "viv_mixture_se", "viv_mixture_components",
                                           "viv_mixture_t", "viv_mixture_t_grid"))

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {self.key("viv_mixture"): False}

    def params(self, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
        return {**super().params(shape), "samples": self.samples, "curve_samples": self.curve_samples,
                "seed": self.seed}

    def components(self, state: State) -> list[Component]:
        classes, _ = self.class_latents(state)
        shift = (state["channels"].mean / state["channels"].std)[:, None]  # (C, 1): the standardisation's shift
        comps = []
        for x in classes.values():
            lam_c, q_c, lam_s, q_s = kronecker_spectrum(x, self.iterations, self.ridge, self.tol)
            mean = x.mean(axis=0, dtype=np.float64) - shift
            comps.append(Component(float(len(x)), mean, np.outer(lam_c, lam_s), q_c, q_s))
        return comps

    def _finalize(self, state: State) -> dict[str, Value]:
        comps = self.components(state)
        grid = self.t_grid.copy()
        if not comps:
            nan = float("nan")
            return {self.key("viv_mixture"): nan, self.key("viv_mixture_se"): nan,
                    self.key("viv_mixture_components"): 0.0, self.key("viv_mixture_t"): np.full(len(grid), nan),
                    self.key("viv_mixture_t_grid"): grid}
        rng = np.random.default_rng(self.seed)
        t = (np.arange(self.samples) + rng.random(self.samples)) / self.samples  # stratified over (0, 1)
        values = mixture_residuals(comps, t, rng)
        curve = mixture_residuals(comps, np.repeat(grid, self.curve_samples), rng)
        return {self.key("viv_mixture"): float(values.mean()),
                self.key("viv_mixture_se"): float(values.std(ddof=1) / np.sqrt(len(values))),
                self.key("viv_mixture_components"): float(len(comps)),
                self.key("viv_mixture_t"): curve.reshape(len(grid), -1).mean(axis=1),
                self.key("viv_mixture_t_grid"): grid}
