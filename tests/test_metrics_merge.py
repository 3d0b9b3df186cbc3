"""Every accumulator gives the same numbers for any split of the data into batches and actors, and one pass of
`compute_metrics` equals separate runs; so does a `MetricSet` merged over any split, and its key is its job's."""
from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from raysweep.metrics import MetricSet, build_metric, compute_metrics, merge_all, metrics_consuming, run_accumulator

N, C, H, W = 90, 4, 8, 8
POOLED = ["viv", "sec", "lnc", "spatial", "linear_probe"]  # the set a study streams (each metric: the test above)
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


def assert_same(a: dict, b: dict, atol: float = 1e-12) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=atol, equal_nan=True, err_msg=key)


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


@pytest.mark.parametrize("seed", range(2))
def test_a_metric_set_merged_over_any_split_equals_its_one_pass(seed):
    """What the pool does: actors update the whole set on their blocks (from fresh states), the states travel
    pickled with the set itself, the driver merges them in arrival order."""
    data = dataset(seed=seed)
    one_pass = MetricSet(POOLED)
    reference = one_pass.run([data])
    rng = np.random.default_rng(10 + seed)
    for _ in range(3):
        travelled = pickle.loads(pickle.dumps(one_pass))  # the set as an actor receives it: rebuilt there
        parts = [pickle.loads(pickle.dumps(travelled.update(travelled.init(), b)))
                 for b in random_batches(data, rng)]
        merged = one_pass.init()
        for i in rng.permutation(len(parts)):
            merged = one_pass.merge(merged, parts[i])
        assert_same(one_pass.finalize(merged), reference, atol=1e-8)  # float32 sums near zero (srss ~ 1e-3)


def test_a_metric_set_keys_like_its_job_and_on_what_changes_its_numbers(monkeypatch):
    from raysweep.config.plan import LatentMetricJob
    from raysweep.metrics.smoothness import SpectralEnergy

    base = MetricSet(["viv", "sec"], {"sec": {"rhos": [0.25]}})
    assert base.key("tok") == LatentMetricJob.of("vf", "tok", ("viv", "sec"), {"sec": {"rhos": [0.25]}}).key
    assert MetricSet(["viv", "sec"], {"sec": {"rhos": [0.5]}}).key("tok") != base.key("tok")
    assert MetricSet(["viv", "sec"]).key("tok") != base.key("tok")
    assert base.key("other") != base.key("tok")
    stats = SimpleNamespace(channel_mean=np.zeros(C), channel_std=np.ones(C))
    assert base.with_footer(stats).key("tok") == base.key("tok")  # footer statistics come with the upstream
    before = base.key("tok")
    monkeypatch.setattr(SpectralEnergy, "version", SpectralEnergy.version + 1)
    assert base.key("tok") != before
    with pytest.raises(ValueError, match="params given for metric.*sec"):
        MetricSet(["viv"], {"sec": {}})
