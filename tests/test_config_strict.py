"""Study inputs that would otherwise be silently reinterpreted: the ones whose result is still well defined are
accepted with a warning (and the trial count says what runs); YAML merge keys are not mistaken for duplicates."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from raysweep.config import ConfigError, load_study, parse_study


def test_random_draws_that_coincide_run_once_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    space = {"num_samples": 6, "regularizer": {"choice": ["baseline", "eq"]}, "steps": {"choice": [1, 2]}}
    with caplog.at_level(logging.WARNING):
        study = parse_study({"name": "s", "tokenizers": space})
    keys = [t.key() for t in study.tokenizer_trials]
    assert len(keys) == len(set(keys)) <= 4  # at most 2 x 2 distinct trials out of 6 draws
    repeats = [r for r in caplog.records if "repeats an earlier draw" in r.getMessage()]
    assert len(repeats) == 6 - len(keys)


def test_repeated_cfg_scale_is_evaluated_once_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        study = parse_study({"name": "s", "evaluation": {"cfg_scales": [2.0, 1.0, 2.0]}})
    assert study.evaluation.cfg_scales == [1.0, 2.0]
    assert any("repeats a scale" in r.getMessage() for r in caplog.records)


def test_merge_key_override_is_not_a_duplicate_but_a_repeated_key_is(tmp_path: Path) -> None:
    merged = tmp_path / "merged.yaml"
    merged.write_text("name: s\ntokenizers:\n  variants:\n    - &b {regularizer: baseline, steps: 3}\n"
                      "    - {<<: *b, steps: 4}\n")
    assert [t.steps for t in load_study(merged).tokenizer_trials] == [3, 4]

    repeated = tmp_path / "repeated.yaml"
    repeated.write_text("name: s\ntokenizers:\n  variants:\n    - {regularizer: baseline, steps: 3, steps: 4}\n")
    with pytest.raises(ConfigError, match=r"variants\[0\]\.steps: key given twice \(lines 4 and 4\)"):
        load_study(repeated)


@pytest.mark.parametrize("value", ["nan", "-inf", "1e999"])
def test_non_finite_strings_in_float_fields_name_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"tokenizers\.lr: .*finite"):
        parse_study({"name": "s", "tokenizers": {"lr": value}})


def test_params_of_a_regularizer_that_takes_none_are_one_config_error() -> None:
    """(An AttributeError from the strict-scalar check once, before the message that names the refused params.)"""
    with pytest.raises(ConfigError, match=r"variants\[0\]: regularizer 'baseline': x: it takes no params"):
        parse_study({"name": "s", "tokenizers": {"variants": [{"regularizer": "baseline", "params": {"x": 1}}]}})
