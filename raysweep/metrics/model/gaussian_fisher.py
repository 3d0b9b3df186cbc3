"""Fisher geometry of the class-Gaussian model (METRICS.md §8): FI(t), FIR(t) = dFI/dt and mmse(t) curves.

Same model and covariance fit as VIV (`raysweep.metrics.velocity`): per class, Kronecker flip-flop eigenvalues
λ of the standardised latents; then, with κ_i(t) = (1−t)² + t²λ_i (`raysweep.metrics.fisher`),
FI(t) = Σ 1/κ_i, FIR(t) = −Σ κ_i'/κ_i² with κ_i' = 2tλ_i − 2(1−t), mmse(t) = Σ λ_i(1−t)²/κ_i.
Curves are per dimension (÷ d) and averaged over classes, on VIV's grid (t = 1 left out: FI is infinite there
for a zero eigenvalue). The scalar `mmse` = ∫₀¹ mmse(t)/d dt (lower is better, like VIV: VIV(t) = mmse(t)/(1−t)²).
Needs no network, so it is a plain latent `Accumulator` that runs in the Ray Data metric stage.
"""
from __future__ import annotations

import numpy as np

from raysweep.metrics.base import State, Value
from raysweep.metrics.fisher import fisher_information, kappa, mmse
from raysweep.metrics.velocity import VelocityAmbiguity, kronecker_eigenvalues

QUADRATURE_NODES = 64  # Gauss-Legendre nodes for ∫₀¹ mmse(t) dt (a smooth, bounded integrand)


def fisher_information_rate(lams: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """FIR(t) = dFI/dt = −Σ κ_i'(t)/κ_i(t)², the shape of t."""
    tt = np.asarray(t, np.float64)[..., None]
    slope = 2 * tt * np.asarray(lams, np.float64) - 2 * (1 - tt)  # κ'(t), [T, m]
    return -(slope / np.square(kappa(lams, t))).sum(axis=-1)


def integrated_mmse(lams: np.ndarray) -> float:
    """∫₀¹ mmse(t) dt by Gauss-Legendre quadrature."""
    nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    return float(weights @ mmse(lams, (nodes + 1) / 2) / 2)


class GaussianFisher(VelocityAmbiguity):
    """FI(t), FIR(t), mmse(t) over classes on per-channel standardised latents: VIV's parameters, state and class
    selection (small classes skipped and warned), other functionals of the same eigenvalues."""

    name = "fisher"
    perspective = "fisher"

    @property
    def keys(self) -> tuple[str, ...]:
        curves = [f"{c}{s}" for c in ("fi_t", "fir_t", "mmse_t") for s in ("", "_grid")]
        return tuple(self.key(m) for m in ("mmse", "fisher_classes_skipped", *curves))

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {self.key("mmse"): False}

    def _finalize(self, state: State) -> dict[str, Value]:
        classes, skipped = self.class_latents(state)
        d = int(np.prod(state["shape"]))
        rows = []  # per class: [∫mmse, FI(t)..., FIR(t)..., mmse(t)...] / d
        for x in classes.values():
            lams = kronecker_eigenvalues(x, self.iterations, self.ridge)
            rows.append(np.concatenate([[integrated_mmse(lams)], fisher_information(lams, self.t_grid),
                                        fisher_information_rate(lams, self.t_grid), mmse(lams, self.t_grid)]) / d)
        t = len(self.t_grid)
        mean = np.mean(rows, axis=0) if rows else np.full(1 + 3 * t, np.nan)
        out: dict[str, Value] = {self.key("mmse"): float(mean[0]), self.key("fisher_classes_skipped"): float(skipped)}
        for i, curve in enumerate(("fi_t", "fir_t", "mmse_t")):
            out[self.key(curve)] = mean[1 + i * t:1 + (i + 1) * t]
            out[self.key(f"{curve}_grid")] = self.t_grid.copy()
        return out
