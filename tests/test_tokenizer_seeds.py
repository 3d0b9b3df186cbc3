"""`tokenizers.seeds`: every tokenizer trained once per seed, each replicate its own job and content key, all
replicates sharing one tokenizer id in the analysis (so a bootstrap draws them together) and kept apart as runs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysweep.analysis.correlation import best_cfg_rows
from raysweep.analysis.noise import measure_noise
from raysweep.config import ConfigError, parse_study
from raysweep.config.plan import StudyPlan
from raysweep.stages.analysis import missing_trials

STUDY = {"name": "s", "tokenizers": {"seeds": [0, 3], "variants": [{"regularizer": "baseline"},
                                                                   {"regularizer": "eq", "id": "eqx"}]},
         "diffusion": {"seeds": [0, 1]}}


def test_each_replicate_is_its_own_job_sharing_the_tokenizer_id() -> None:
    study = parse_study(STUDY)
    trials = study.tokenizer_trials
    assert [(t.id, t.seed) for t in trials] == [("baseline-s0", 0), ("baseline-s3", 3), ("eqx-s0", 0),
                                                ("eqx-s3", 3)]
    assert [t.tags()["tokenizer_id"] for t in trials] == ["baseline", "baseline", "eqx", "eqx"]
    assert [t.tags()["tokenizer_seed"] for t in trials] == ["0", "3", "0", "3"]
    assert len({t.key() for t in trials}) == 4  # the seed is an input; the id is not
    plan = StudyPlan.from_spec(study)
    assert len(plan.tokenizers) == 4 and len(plan.diffusion) == 8
    one = parse_study({**STUDY, "tokenizers": {**STUDY["tokenizers"], "seeds": [3]}})
    assert [(t.id, t.seed) for t in one.tokenizer_trials] == [("baseline", 3), ("eqx", 3)]
    assert one.tokenizer_trials[0].key() == trials[1].key()  # the same configuration and seed: the same result


@pytest.mark.parametrize(("tokenizers", "path", "needle"), [
    ({"seeds": [0, 0]}, "tokenizers.seeds[1]", "twice"),
    ({"seeds": "0,1"}, "tokenizers.seeds", "list of integers"),
    ({"seeds": [0, 1], "seed": 2}, "tokenizers.seed", "conflicts"),
    ({"seeds": [0, 1], "variants": [{"seed": 2}]}, "tokenizers.variants[0].seed", "conflicts"),
])
def test_bad_seeds_name_the_key(tokenizers: dict, path: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_study({"name": "s", "tokenizers": tokenizers}, "study.yaml")
    assert str(info.value).startswith(f"study.yaml: {path}") and needle in str(info.value)


def test_replicates_are_separate_runs_in_the_table_and_together_in_the_noise_model() -> None:
    """Two tokenizer seeds x two diffusion seeds x two CFG scales: best-CFG keeps all four runs of a tokenizer
    (not the best replicate), and the noise model sees four replicates per tokenizer."""
    rng = np.random.default_rng(0)
    rows = [{"tokenizer_id": t, "tokenizer_seed": ts, "backbone": "SiT-T", "seed": s, "cfg_scale": c,
             "gen/gfid": 10.0 * (t == "b") + ts + 0.1 * s + c + 0.01 * rng.standard_normal(),
             "latent/velocity/viv": float(t == "b")}
            for t in ("a", "b", "c") for ts in (0, 1) for s in (0, 1) for c in (1.0, 2.0)]
    table = pd.DataFrame(rows)
    best = best_cfg_rows(table)
    assert len(best) == 12 and set(best["cfg_scale"]) == {1.0}
    assert len(best_cfg_rows(table.drop(columns="tokenizer_seed"))) == 6  # without the column: one run per seed
    report = measure_noise(best, {"latent/velocity/viv": False}, metrics=["latent/velocity/viv"], n_boot=50)
    assert report.n_tokenizers == 3 and report.seeds_per_tokenizer == pytest.approx(4.0)


def test_missing_trials_tell_replicates_apart() -> None:
    study = parse_study(STUDY)
    tracked = pd.DataFrame([{"tokenizer_id": "baseline", "tokenizer_seed": 0, "backbone": "SiT-T", "seed": 0},
                            {"tokenizer_id": "baseline", "tokenizer_seed": 0, "backbone": "SiT-T", "seed": 1},
                            {"tokenizer_id": "baseline", "tokenizer_seed": 3, "backbone": "SiT-T", "seed": 0}])
    missing = missing_trials(study, tracked)
    got = sorted((r.tokenizer_id, r.tokenizer_seed, r.seed if "seed" in missing and r.seed == r.seed else None)
                 for r in missing.itertuples())
    assert got == [("baseline", 3, 1), ("eqx", 0, None), ("eqx", 3, None)]
