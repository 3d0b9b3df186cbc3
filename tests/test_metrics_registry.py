"""Registry names, kinds and keys, parameter validation, batch validation and the Moments merge."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from raysweep.metrics import (
    METRICS,
    Accumulator,
    Moments,
    build_metric,
    compute_metrics,
    metric_directions,
    metrics_consuming,
)
from raysweep.metrics.model import DiffusionMetric, TokenizerMetric

EXPECTED_KEYS = {
    "latent/velocity/viv", "latent/velocity/viv_classes_skipped", "latent/velocity/viv_t",
    "latent/velocity/viv_t_grid", "latent/velocity/viv_per_class", "latent/velocity/viv_per_class_grid",
    "latent/velocity/viv_mixture", "latent/velocity/viv_mixture_se", "latent/velocity/viv_mixture_components",
    "latent/velocity/viv_mixture_t", "latent/velocity/viv_mixture_t_grid",
    "latent/smoothness/sec@0.25", "latent/smoothness/sec@0.5",
    "latent/semantic/lnc@5", "latent/semantic/lnc@10", "latent/semantic/linear_probe", "latent/spatial/lds",
    "latent/spatial/cds", "latent/spatial/srss", "latent/uniformity/density_cv", "latent/uniformity/gini",
    "latent/uniformity/entropy", "latent/uniformity/points", "latent/uniformity/perplexity",
    "latent/fisher/mmse", "latent/fisher/fisher_classes_skipped", "latent/fisher/fi_t", "latent/fisher/fi_t_grid",
    "latent/fisher/fir_t", "latent/fisher/fir_t_grid", "latent/fisher/mmse_t", "latent/fisher/mmse_t_grid",
}
FAST = {"uniformity": {"iterations": 250, "repeats": 1}, "viv_mixture": {"samples": 8, "curve_samples": 1}}


def batch(n: int = 12, c: int = 2, h: int = 4, w: int = 4, seed: int = 0, **override) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    fields = {"sample_id": np.arange(n), "label": np.arange(n) % 2,
              "latent": rng.normal(size=(n, c, h, w)).astype(np.float32), "fg_mask": None}
    return SimpleNamespace(**{**fields, **override})


BASES = {"latents": Accumulator, "tokenizer": TokenizerMetric, "diffusion": DiffusionMetric}


def test_registry_names_perspectives_and_keys():
    keys = set()
    for name, info in METRICS.items():
        metric = build_metric(name)
        assert metric.name == name and info.perspective == metric.perspective
        assert all(k.startswith(f"latent/{metric.perspective}/") for k in metric.keys)
        assert set(metric.higher_is_better) <= set(metric.keys)
        if info.consumes == "latents":
            keys |= set(metric.keys)
    assert keys == EXPECTED_KEYS
    assert set(compute_metrics([batch(n=24)], params=FAST)) == EXPECTED_KEYS


def test_one_registry_whose_typed_bases_say_what_each_metric_consumes():
    assert metrics_consuming("tokenizer") == ["distortion", "equivariance", "ifid"]
    assert metrics_consuming("diffusion") == ["velocity_fisher"]
    assert "fisher" in metrics_consuming("latents")  # the class-Gaussian one needs no network, and is listed once
    for name, info in METRICS.items():
        kinds = [kind for kind, base in BASES.items() if issubclass(info.factory, base)]
        assert kinds == [info.consumes], name
    assert sorted(n for kind in BASES for n in metrics_consuming(kind)) == sorted(METRICS)


def test_directions():
    directions = metric_directions()
    assert directions["latent/velocity/viv"] is False and directions["latent/smoothness/sec@0.5"] is False
    assert directions["latent/semantic/lnc@10"] is True and directions["latent/spatial/srss"] is True
    assert "latent/velocity/viv_classes_skipped" not in directions and "latent/velocity/viv_t" not in directions
    assert directions["latent/velocity/viv_mixture"] is False and directions["latent/uniformity/entropy"] is True
    assert directions["latent/uniformity/density_cv"] is False and directions["latent/uniformity/gini"] is False


def test_unknown_names_and_parameters_raise_listing_the_allowed():
    allowed = ("allowed: distortion, equivariance, fisher, ifid, linear_probe, lnc, sec, spatial, uniformity, "
               "velocity_fisher, viv, viv_mixture$")
    with pytest.raises(ValueError, match=f"^unknown metric 'fid'; {allowed}"):
        build_metric("fid")
    with pytest.raises(ValueError, match="^metric 'ifid' runs on 'tokenizer', not 'latents'; allowed: fisher, "
                                         "linear_probe, lnc, sec, spatial, uniformity, viv, viv_mixture$"):
        compute_metrics([batch()], ["ifid"])
    with pytest.raises(ValueError, match="^metric 'viv' runs on 'latents', not 'diffusion'; allowed: "
                                         "velocity_fisher$"):
        build_metric("viv", DiffusionMetric)
    with pytest.raises(ValueError, match="unknown parameter.*rho.*allowed: rhos"):
        build_metric("sec", rho=0.3)
    with pytest.raises(ValueError, match="not in names"):
        compute_metrics([batch()], ["viv"], {"sec": {}})


def test_parameters_change_keys():
    assert build_metric("sec", rhos=[0.1]).keys == ("latent/smoothness/sec@0.1",)
    assert build_metric("lnc", ks=[3]).keys == ("latent/semantic/lnc@3",)


@pytest.mark.parametrize("name", metrics_consuming("latents"))
def test_bad_batches_raise_value_errors(name):
    metric = build_metric(name)
    bad_latent = batch().latent.copy()
    bad_latent[3, 1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        metric.update(metric.init(), batch(latent=bad_latent))
    with pytest.raises(ValueError, match="fg_mask must have shape"):
        metric.update(metric.init(), batch(fg_mask=np.ones((12, 2, 2), np.uint8)))
    with pytest.raises(ValueError, match="label must be an integer array"):
        metric.update(metric.init(), batch(label=np.zeros(5, int)))
    with pytest.raises(ValueError, match=r"\[B,C,H,W\]"):
        metric.update(metric.init(), batch(latent=np.zeros((12, 4, 4), np.float32)))
    with pytest.raises(ValueError, match="different latent shapes"):
        metric.merge(metric.update(metric.init(), batch()), metric.update(metric.init(), batch(c=3)))
    with pytest.raises(ValueError, match="no latents"):
        metric.finalize(metric.init())


def test_moments_merge_equals_direct_moments():
    rng = np.random.default_rng(1)
    x = rng.normal(loc=1e4, size=(50, 3, 5))  # a large mean: raw sums of squares would cancel badly
    parts = np.split(x, [7, 8, 31])
    merged = Moments.of(parts[0], (0, 2))
    for part in parts[1:]:
        merged = merged + Moments.of(part, (0, 2))
    assert merged.count == 250
    np.testing.assert_allclose(merged.mean, x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(merged.m2 / merged.count, x.var(axis=(0, 2)), rtol=1e-9)
