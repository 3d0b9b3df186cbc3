"""Every accumulator gives the same numbers for any split of the data into batches and actors, and one pass of
`compute_metrics` equals separate runs."""
from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from raysweep.metrics import build_metric, compute_metrics, merge_all, metrics_consuming, run_accumulator

N, C, H, W = 90, 4, 8, 8
FAST = {"uniformity": {"iterations": 250, "repeats": 1}, "viv_mixture": {"samples": 64, "curve_samples": 2}}


def dataset(seed: int = 0) -> SimpleNamespace:
    """Labelled, masked latents with channel offsets and scales, in a shuffled sample order."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, N)
    latent = rng.normal(size=(N, C, H, W)) + 2.0 * labels[:, None, None, None] * rng.normal(size=(1, C, 1, 1))
    latent = latent * np.array([1.0, 3.0, 0.3, 2.0])[:, None, None] + np.array([0.0, 5.0, -2.0, 1.0])[:, None, None]
    mask = (rng.random((N, H, W)) < 0.4).astype(np.uint8)
    return SimpleNamespace(sample_id=rng.permutation(N).astype(np.int64), label=labels.astype(np.int32),
                           latent=latent.astype(np.float32), fg_mask=mask)


def take(data: SimpleNamespace, rows: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(**{k: getattr(data, k)[rows] for k in ("sample_id", "label", "latent", "fg_mask")})


def random_batches(data: SimpleNamespace, rng: np.random.Generator) -> list[SimpleNamespace]:
    """A random permutation cut at random points (some batches of one row)."""
    order = rng.permutation(N)
    cuts = np.sort(rng.choice(np.arange(1, N), size=rng.integers(2, 12), replace=False))
    return [take(data, rows) for rows in np.split(order, cuts)]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-12, equal_nan=True, err_msg=key)


@pytest.mark.parametrize("name", [*metrics_consuming("latents"), "spatial-given-stats"])
def test_any_split_into_batches_and_actors_gives_the_same_result(name):
    data = dataset()
    params: dict = FAST.get(name, {})
    if name == "spatial-given-stats":
        x = data.latent.astype(np.float64)
        name, params = "spatial", {"channel_mean": list(x.mean(axis=(0, 2, 3))),
                                   "channel_std": list(x.std(axis=(0, 2, 3)))}
    reference = run_accumulator(build_metric(name, **params), [data])
    rng = np.random.default_rng(1)
    for _ in range(3):
        metric = build_metric(name, **params)
        # actors: each summarises its own batches, states travel pickled, the driver merges them in random order
        states = [pickle.loads(pickle.dumps(metric.update(metric.init(), b))) for b in random_batches(data, rng)]
        states = [states[i] for i in rng.permutation(len(states))]
        half = len(states) // 2
        tree = metric.merge(merge_all(metric, states[:half]), merge_all(metric, states[half:]))
        assert_same(metric.finalize(tree), reference)
        assert_same(run_accumulator(metric, random_batches(data, rng)), reference)


def test_one_pass_over_all_metrics_equals_separate_runs():
    data = dataset(seed=2)
    batches = random_batches(data, np.random.default_rng(3))
    together = compute_metrics(batches, params=FAST)
    separate: dict = {}
    for name in metrics_consuming("latents"):
        separate.update(run_accumulator(build_metric(name, **FAST.get(name, {})), [data]))
    assert_same(together, separate)
    assert all(np.all(np.isfinite(v)) for v in together.values())
