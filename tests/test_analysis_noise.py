"""The measurement section: ICC against ANOVA's F and simulation, the power line against simulated tests, chance
levels against label-blind features, bootstrap CIs, and the report's warnings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from raysweep.analysis.noise import (
    bootstrap_ci,
    detectable_r,
    fisher_ci,
    icc_oneway,
    icc_rows,
    lnc_chance,
    measure_noise,
    probe_chance,
    spearman_brown,
    tokenizers_needed,
)


def test_icc_is_anova_f_closed_form():
    """Balanced one-way ANOVA: ICC(1) = (F - 1) / (F + k - 1) with F = MSB / MSW (scipy's f_oneway)."""
    rng = np.random.default_rng(0)
    groups = [rng.normal(mu, 1.0, 3) for mu in rng.normal(0, 2.0, 7)]
    f = stats.f_oneway(*groups).statistic
    assert icc_oneway(groups) == pytest.approx((f - 1) / (f + 3 - 1), rel=1e-12)
    assert icc_oneway([np.array([1.0, 1.0]), np.array([3.0, 3.0])]) == pytest.approx(1.0)  # seeds agree exactly


def _icc_reference(groups: list[np.ndarray]) -> float:
    """ICC(1) group by group, straight from the mean squares (the loop the batched form replaces)."""
    groups = [g for g in groups if len(g)]
    sizes = np.array([len(g) for g in groups], float)
    n, k = sizes.sum(), len(groups)
    if k < 2 or n - k < 1:
        return float("nan")
    grand = np.concatenate(groups).mean()
    msb = sum(len(g) * (g.mean() - grand) ** 2 for g in groups) / (k - 1)
    msw = sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - k)
    k0 = (n - (sizes**2).sum() / n) / (k - 1)
    return float((msb - msw) / (msb + (k0 - 1) * msw))


def test_batched_icc_bootstrap_equals_the_loop_over_the_same_resamples():
    """Unequal seed counts (NaN-padded rows): every resample's ICC and the percentile CI equal the group-by-group
    formula evaluated resample by resample, with the resamples bootstrap_ci draws for the seed."""
    rng = np.random.default_rng(7)
    groups = [rng.normal(mu, 1.0, n) for mu, n in zip(rng.normal(0, 1.5, 15), rng.integers(1, 5, 15))]
    padded = np.full((15, 4), np.nan)
    for i, g in enumerate(groups):
        padded[i, :len(g)] = g
    idx = np.random.default_rng(3).integers(0, 15, size=(300, 15))
    expected = [_icc_reference([r[np.isfinite(r)] for r in padded[i]]) for i in idx]
    np.testing.assert_allclose(icc_rows(padded[idx]), expected, rtol=0, atol=1e-12)
    assert icc_oneway(groups) == pytest.approx(_icc_reference(groups), abs=1e-12)
    lo, hi = bootstrap_ci(padded, icc_rows, n_boot=300, seed=3)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(expected, [2.5, 97.5])), abs=1e-12)
    assert np.isnan(icc_rows(np.array([[[1.0, np.nan], [np.nan, np.nan]]]))[0])  # one group left: undefined


def test_icc_recovers_the_variance_share_by_simulation():
    """Tokenizer effects sd 2, seed noise sd 1: ICC = 4 / 5, also with unequal seed counts (k0)."""
    rng = np.random.default_rng(1)
    sizes = rng.integers(2, 5, 4000)
    groups = [rng.normal(mu, 1.0, n) for mu, n in zip(rng.normal(0, 2.0, 4000), sizes)]
    assert icc_oneway(groups) == pytest.approx(0.8, abs=0.01)
    assert spearman_brown(0.8, 2) == pytest.approx(1.6 / 1.8)


def test_detectable_r_has_the_stated_power_by_simulation():
    """At r = detectable_r(n), a two-sided Fisher-z test at 0.05 rejects r = 0 in at least 80% of simulated studies
    (82% at n = 24: the closed form ignores the small bias of atanh(r), so it errs on the safe side)."""
    n, rng = 24, np.random.default_rng(2)
    r = detectable_r(n)
    assert r == pytest.approx(np.tanh((1.959964 + 0.841621) / np.sqrt(21)), rel=1e-5)
    x = rng.normal(size=(20000, n))
    y = r * x + np.sqrt(1 - r**2) * rng.normal(size=(20000, n))
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    sample_r = (xc * yc).sum(1) / np.sqrt((xc**2).sum(1) * (yc**2).sum(1))
    power = (np.abs(np.arctanh(sample_r)) * np.sqrt(n - 3) > 1.959964).mean()
    assert 0.8 <= power <= 0.835
    lo, hi = fisher_ci(r, n)  # the interval is the acceptance region of the same test, shifted to r
    assert np.arctanh(hi) - np.arctanh(lo) == pytest.approx(2 * 1.959964 / np.sqrt(n - 3), rel=1e-5)
    covered = np.mean([lo < r < hi for lo, hi in (fisher_ci(v, n) for v in sample_r[:5000])])
    assert covered == pytest.approx(0.95, abs=0.012)
    assert tokenizers_needed(r) == n and detectable_r(tokenizers_needed(0.5)) <= 0.5 < detectable_r(
        tokenizers_needed(0.5) - 1)


def test_chance_levels_match_label_blind_features():
    """LNC@5 of random features (cosine kNN, self excluded) averages to the closed form; the probe's is the
    majority share."""
    rng = np.random.default_rng(3)
    counts = [30, 30, 60, 120]
    labels = np.repeat(np.arange(4), counts)
    hits = []
    for _ in range(20):
        f = rng.normal(size=(len(labels), 8))
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        sim = f @ f.T
        np.fill_diagonal(sim, -np.inf)
        nn = np.argsort(-sim, axis=1)[:, :5]
        hits.append((labels[nn] == labels[:, None]).mean())
    expected = (30 * 29 * 2 + 60 * 59 + 120 * 119) / (240 * 239)
    assert lnc_chance(counts) == pytest.approx(expected)
    assert np.mean(hits) == pytest.approx(expected, abs=0.01)
    assert probe_chance(counts) == 0.5
    assert lnc_chance([50] * 10) == pytest.approx(49 / 499)  # a bit under 1/10: self is excluded


def test_bootstrap_ci_of_a_mean_matches_the_normal_interval():
    x = np.random.default_rng(4).normal(5.0, 2.0, 400)
    lo, hi = bootstrap_ci(x, lambda samples: samples.mean(axis=1), n_boot=4000, seed=0)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.04) and hi == pytest.approx(x.mean() + half, abs=0.04)


def study(n_tok: int, seeds: int, noise: float, seed: int = 0) -> pd.DataFrame:
    """gFID = 3 - viv-driven effect + seed noise; LNC at chance for 10 balanced classes of 100."""
    rng = np.random.default_rng(seed)
    viv = rng.uniform(0.2, 1.0, n_tok)
    rows = [{"tokenizer_id": f"t{i}", "seed": s, "latent/velocity/viv": viv[i], "latent/semantic/lnc@5": 0.1,
             "gen/gfid": 3 + 4 * viv[i] + rng.normal(0, noise)} for i in range(n_tok) for s in range(seeds)]
    return pd.DataFrame(rows)


def test_a_big_quiet_study_concludes_and_a_small_one_says_it_cannot():
    big = measure_noise(study(24, 2, 0.1), {"latent/velocity/viv": False, "latent/semantic/lnc@5": True},
                        class_counts=[100] * 10, n_boot=300)
    assert big.n_tokenizers == 24 and big.seeds_per_tokenizer == 2 and big.icc > 0.9 and not big.too_small
    viv = big.correlations.set_index("metric").loc["latent/velocity/viv"]
    assert viv["r"] < -0.95 and viv["n"] == 24 and viv["ci_width"] < 0.1  # -viv vs gFID: the paper's sign
    assert big.chance.set_index("metric").loc["latent/semantic/lnc@5", "at_chance"]
    assert any("lnc@5 sits at chance" in n for n in big.notes())
    from raysweep.analysis.noise import CLASS_COUNTS

    column = measure_noise(study(24, 2, 0.1).assign(**{CLASS_COUNTS: ",".join(["100"] * 10)}), {}, n_boot=20)
    assert column.chance.set_index("metric").loc["latent/semantic/lnc@5", "chance"] == pytest.approx(99 / 999)
    small = measure_noise(study(6, 1, 0.1), {"latent/velocity/viv": False}, n_boot=100)
    assert small.too_small and np.isnan(small.icc)
    assert "Too small to conclude" in small.notes()[0] and "More tokenizers are needed" in small.notes()[0]
    fragment = small.html()
    assert fragment.startswith('<p class="warn">Too small') and "<table>" in fragment
    assert measure_noise(pd.DataFrame({"x": [1.0]}), {}).n_tokenizers == 0  # tables without runs: empty
    two = pd.concat([study(5, 2, 0.1).assign(backbone="a"), study(5, 2, 0.1, seed=1).assign(backbone="b")])
    assert measure_noise(two, {}, n_boot=20).n_tokenizers == 10  # (tokenizer, backbone) units
