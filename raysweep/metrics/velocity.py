"""VIV, the velocity irreducible variance of flow matching under a class-conditional Gaussian model (METRICS.md §1).

For `x1 | y=k ~ N(μ_k, Σ_k)` with eigenvalues λ_k,i the irreducible variance of `v = x1 − x0` given `(x_t, y)` is
`I_k(t) = Σ λ/((1−t)² + t²λ)`, and over `t ~ U(0,1)` it integrates to `I_k = (π/2) Σ sqrt(λ)`.
VIV = mean_k I_k / d (d = C·H·W): lower means less velocity ambiguity. Σ_k (d×d) is far too large to estimate from
the few samples of a class, so it is modelled as Σ_s ⊗ Σ_c (spatial HW×HW, channel C×C) and fitted by the
Kronecker flip-flop MLE; only C×C and HW×HW matrices are ever decomposed.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from raysweep.metrics.base import Accumulator, Batch, Moments, State, Value
from raysweep.metrics.fisher import kappa, ratio_sum

log = logging.getLogger(__name__)


def _centred(x: np.ndarray) -> np.ndarray:
    """Class samples [n, ...] -> float64, minus their mean."""
    x = np.asarray(x, np.float64)
    return x - x.mean(axis=0, keepdims=True)


def _cholesky(a: np.ndarray, ridge: float) -> np.ndarray:
    """Lower Cholesky factor (float32) of A + ridge·mean(diag A)·I: the whitening used as a triangular solve."""
    shift = ridge * max(float(np.trace(a)) / len(a), np.finfo(float).tiny)
    return linalg.cholesky(a + shift * np.eye(len(a)), lower=True).astype(np.float32)


# Flip-flop defaults, shared by every fit of the module and the metrics built on it: the paper's 5 iterations (a
# cap), a ridge relative to the mean diagonal that only conditions the solves, and the early-stop tolerance.
ITERATIONS, RIDGE, TOL = 5, 1e-3, 1e-4
CHUNK_SAMPLES = 128  # samples per flip-flop block: a [C, 128, P] float32 buffer (4 MiB at 32x16x16) stays in cache


def _whitened_gram(z: np.ndarray, cholesky: np.ndarray | None, channels: bool) -> np.ndarray:
    """One flip-flop half-step, unnormalised, float64, for centred z [C, n, P] float32: channels=True gives
    Σ_n X_n Σ_s⁻¹ X_nᵀ [C, C] with `cholesky` = L_s (None: Σ_s = I), channels=False Σ_n X_nᵀ Σ_c⁻¹ X_n [P, P] with
    L_c. Block by block of samples: copy into one cache-sized buffer, triangular solve in place, one ssyrk into
    a float64 sum (short float32 sums; whole-array solves were memory-bound, 30x slower per sample at n = 10,000)."""
    c, n, p = z.shape
    size = c if channels else p
    upper = np.zeros((size, size))
    flat = np.empty(c * min(n, CHUNK_SAMPLES) * p, np.float32)
    for start in range(0, n, CHUNK_SAMPLES):
        m = min(CHUNK_SAMPLES, n - start)
        part = flat[:c * m * p].reshape(c, m, p)
        np.copyto(part, z[:, start:start + m])
        if channels:
            rows = part.reshape(c * m, p).T  # Fortran (P, C·m): column (c, n) is X_n[c, :]
            if cholesky is not None:
                rows = blas.strsm(1.0, cholesky, rows, lower=1, overwrite_b=1)  # L_s⁻¹ X_nᵀ
            upper += blas.ssyrk(1.0, rows.T.reshape(c, m * p).T, trans=1)
        else:
            cols = blas.strsm(1.0, cholesky, part.reshape(c, m * p).T, side=1, lower=1, trans_a=1,
                              overwrite_b=1)  # Fortran (m·P, C): (L_c⁻¹ X_n)ᵀ
            upper += blas.ssyrk(1.0, cols.T.reshape(c * m, p).T)
    upper = np.triu(upper)  # ssyrk fills the upper triangle
    return upper + np.triu(upper, 1).T


def _change(new: np.ndarray, old: np.ndarray) -> float:
    """Relative Frobenius change of a covariance factor."""
    return float(np.linalg.norm(new - old) / np.linalg.norm(new))


def kronecker_flip_flop(x: np.ndarray, iterations: int = ITERATIONS, ridge: float = RIDGE,
                        tol: float = TOL) -> tuple[np.ndarray, np.ndarray]:
    """Flip-flop MLE of Σ ≈ Σ_s ⊗ Σ_c from class samples x [n, C, P] (P = H·W); returns (Σ_c [C,C], Σ_s [P,P]).

    Samples are centred here. Σ_c ← (1/(nP)) Σ_n X_n Σ_s⁻¹ X_nᵀ, Σ_s ← (1/(nC)) Σ_n X_nᵀ Σ_c⁻¹ X_n, starting from
    Σ_s = I (so the first Σ_c is a plain Gram). Each half-step is one triangular solve with the other factor's
    Cholesky factor and one syrk Gram over all n·C (or n·P) rows of a (C, n, P) float32 copy of the data, block
    by block of samples (`_whitened_gram`): ~2·n·C·P·(C+P) flops an iteration, the least an exact iteration
    needs. All BLAS/LAPACK calls go to scipy's library: alternating with numpy's (a second OpenBLAS whose idle
    threads spin) halved the speed.
    The ridge (> 0, relative to the mean diagonal) only conditions the solves; the scale split between the
    factors is fixed by tr Σ_s = P. Iteration stops early once neither factor moves by more than `tol`
    (relative Frobenius) in an iteration (0 = always run `iterations`); convergence is linear, so the factors
    are then within ~tol·(rate) of the fixed point (benchmark data: stops after 3 of 5, VIV within 3e-7).
    """
    x = np.asarray(x)
    n, c, p = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    z = np.empty((c, n, p), np.float32)  # channel-major, so that a block of samples is C runs of m·P values
    np.subtract(x.transpose(1, 0, 2), mean[:, None, :], out=z, casting="same_kind")
    sigma_c, sigma_s = _whitened_gram(z, None, True) / (n * p), np.eye(p)
    for step in range(iterations):
        previous = sigma_c, sigma_s
        if step:
            sigma_c = _whitened_gram(z, _cholesky(sigma_s, ridge), True) / (n * p)
        sigma_s = _whitened_gram(z, _cholesky(sigma_c, ridge), False) / (n * c)
        scale = float(np.trace(sigma_s)) / p
        sigma_s, sigma_c = sigma_s / scale, sigma_c * scale
        if step and max(_change(sigma_c, previous[0]), _change(sigma_s, previous[1])) <= tol:
            break
    return sigma_c, sigma_s


def total_variance(x: np.ndarray) -> float:
    """tr of the unbiased sample covariance of samples x [n, ...], from `Moments` over the samples (float64
    deviations block by block: a whole float64 copy of a pooled set cost half the flip-flop's time)."""
    return float(Moments.of(x, axis=(0,)).m2.sum()) / (len(x) - 1)


def kronecker_spectrum(x: np.ndarray, iterations: int = ITERATIONS, ridge: float = RIDGE,
                       tol: float = TOL) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-pairs of the flip-flop fit to x [n, C, P]: (λ_c [C], Q_c [C,C], λ_s [P], Q_s [P,P]) with the scale
    put on λ_c so that Σ λ_c,j·λ_s,l is the class's total variance (the Kronecker model fixes the shape of the
    spectrum, the data its trace). A class without variance has all-zero eigenvalues."""
    c, p = x.shape[1:]
    variance = total_variance(x)
    if variance == 0:
        return np.zeros(c), np.eye(c), np.ones(p), np.eye(p)
    sigma_c, sigma_s = kronecker_flip_flop(x, iterations, ridge, tol)
    (lam_c, q_c), (lam_s, q_s) = linalg.eigh(sigma_c), linalg.eigh(sigma_s)  # scipy: the flip-flop's BLAS pool
    lam_c, lam_s = lam_c.clip(0.0, None), lam_s.clip(0.0, None)
    return lam_c * (variance / (lam_c.sum() * lam_s.sum())), q_c, lam_s, q_s


def kronecker_eigenvalues(x: np.ndarray, iterations: int = ITERATIONS, ridge: float = RIDGE,
                          tol: float = TOL) -> np.ndarray:
    """The d = C·P eigenvalues λ_c,j·λ_s,l of the flip-flop fit to x [n, C, P], summing to the class's total
    variance (see `kronecker_spectrum`)."""
    lam_c, _, lam_s, _ = kronecker_spectrum(x, iterations, ridge, tol)
    return np.outer(lam_c, lam_s).ravel()


def dense_eigenvalues(x: np.ndarray) -> np.ndarray:
    """All d eigenvalues of the unbiased sample covariance of x [n, ...] (d = prod of the sample shape); the
    nonzero ones come from the SVD of the centred [n, d] data, the rest are 0."""
    flat = _centred(x).reshape(len(x), -1)
    sv = np.linalg.svd(flat, compute_uv=False)
    lams = np.zeros(flat.shape[1])
    lams[: len(sv)] = np.square(sv) / (len(x) - 1)
    return lams


def viv_from_eigenvalues(lams: np.ndarray, d: int | None = None) -> float:
    """Per-dimension integrated irreducible variance (π/2) Σ sqrt(λ) / d (d defaults to len(lams))."""
    lams = np.asarray(lams, np.float64)
    return float(np.pi / 2 * np.sqrt(lams.clip(0.0, None)).sum() / (d or lams.size))


def viv_curve(lams: np.ndarray, t_grid: np.ndarray, d: int | None = None) -> np.ndarray:
    """Per-dimension irreducible variance at each time, Σ λ/((1−t)² + t²λ) / d: [T] for t_grid [T]."""
    lams = np.asarray(lams, np.float64)
    return ratio_sum(lams, kappa(lams, t_grid)) / (d or lams.size)


def viv_dense(x: np.ndarray) -> float:
    """Reference VIV of one class from its full sample covariance (needs n > d to be meaningful); x [n, ...]."""
    return viv_from_eigenvalues(dense_eigenvalues(x))


def class_samples(batch: Batch) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """A batch split by label: {label: [(sample_id [n], latent [n,C,H,W])]}, lists so that merge concatenates."""
    return {int(k): [(batch.sample_id[rows], batch.latent[rows])]
            for k, rows in ((k, batch.label == k) for k in np.unique(batch.label))}


def canonical(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """One class's merged parts -> its latents [n, ...] in sample_id order, so that any split of the data gives
    bit-identical input to the (order-sensitive, floating-point) flip-flop."""
    ids = np.concatenate([i for i, _ in parts])
    return np.concatenate([x for _, x in parts])[np.argsort(ids, kind="stable")]


class VelocityAmbiguity(Accumulator):
    """VIV overall and per class, and the VIV(t) curve, on per-channel standardised latents.

    `iterations` caps the flip-flop, which stops earlier once its factors move by less than `tol` (relative) in
    an iteration (see `kronecker_flip_flop`; tol = 0 always runs `iterations`).
    State: per-channel moments (for the standardisation, applied in finalize) and each class's sample ids and raw
    latents (the flip-flop needs them all; lists of [n_i] and [n_i, C, H, W] float32, concatenated on merge).
    Classes with fewer than `min_class_size` samples are skipped, counted and logged as a warning; their entry of
    the per-class array `viv_per_class` (x grid `viv_per_class_grid` = the labels) is NaN. The curve's grid is
    linspace(0, t_max, t_points); t = 1 is left out because there VIV(1) only counts the directions of non-zero
    variance (λ/κ = 1 for every λ > 0), a rank count that round-off can flip.
    """

    name = "viv"
    perspective = "velocity"

    def __init__(self, iterations: int = ITERATIONS, ridge: float = RIDGE, t_points: int = 20, t_max: float = 0.95,
                 min_class_size: int = 4, tol: float = TOL) -> None:
        if iterations < 1 or ridge <= 0 or t_points < 2 or not 0 < t_max < 1 or min_class_size < 2 or tol < 0:
            raise ValueError(f"{self.name}: need iterations >= 1, ridge > 0, t_points >= 2, 0 < t_max < 1, "
                             f"min_class_size >= 2, tol >= 0; got iterations={iterations}, ridge={ridge}, "
                             f"t_points={t_points}, t_max={t_max}, min_class_size={min_class_size}, tol={tol}")
        self.iterations, self.ridge, self.min_class_size, self.tol = iterations, ridge, min_class_size, tol
        self.t_grid = np.linspace(0.0, t_max, t_points)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(m) for m in ("viv", "viv_classes_skipped", "viv_t", "viv_t_grid", "viv_per_class",
                                           "viv_per_class_grid"))

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {self.key("viv"): False}

    def params(self, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
        return {"iterations": self.iterations, "ridge": self.ridge, "t_points": len(self.t_grid),
                "t_max": float(self.t_grid[-1]), "min_class_size": self.min_class_size, "tol": self.tol}

    def summarise(self, batch: Batch) -> State:
        return {"shape": batch.shape, "channels": batch.channels, "classes": class_samples(batch)}

    def class_latents(self, state: State) -> tuple[dict[int, np.ndarray], int]:
        """Standardised latents [n, C, P] float32 of each class large enough, and the number skipped (warned).
        float32 like the stored latents and the flip-flop's GEMMs (a float64 copy of every class cost a third of
        the finalize); reductions over them (means, total variance) run in float64."""
        c, h, w = state["shape"]
        scale = (1.0 / state["channels"].std[:, None]).astype(np.float32)  # (C, 1); the shift cancels in covariances
        kept, small = {}, {}
        for label in sorted(state["classes"]):
            x = canonical(state["classes"][label])
            if len(x) < self.min_class_size:
                small[label] = len(x)
            else:
                kept[label] = x.reshape(-1, c, h * w) * scale
        if small:
            log.warning("%s: skipped %d class(es) with fewer than %d samples (label: count) %s", self.key(self.name),
                        len(small), self.min_class_size, small)
        return kept, len(small)

    def _finalize(self, state: State) -> dict[str, Value]:
        classes, skipped = self.class_latents(state)
        labels = np.array(sorted(state["classes"]), np.float64)
        per_class = dict.fromkeys(state["classes"], float("nan"))
        curves = []
        for label, x in classes.items():
            lams = kronecker_eigenvalues(x, self.iterations, self.ridge, self.tol)
            per_class[label] = viv_from_eigenvalues(lams)
            curves.append(viv_curve(lams, self.t_grid))
        integrated = [per_class[k] for k in classes]
        t_curve = np.mean(curves, axis=0) if curves else np.full(len(self.t_grid), np.nan)
        return {self.key("viv"): float(np.mean(integrated)) if integrated else float("nan"),
                self.key("viv_classes_skipped"): float(skipped),
                self.key("viv_t"): t_curve, self.key("viv_t_grid"): self.t_grid.copy(),
                self.key("viv_per_class"): np.array([per_class[int(k)] for k in labels]),
                self.key("viv_per_class_grid"): labels}
