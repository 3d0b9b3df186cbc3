"""`diffusion.allocation` and `tokenizers.search` in the study file: `all` is today's study; bad values are one line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from raysweep.config.errors import ConfigError
from raysweep.config.loader import parse_study

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"


def _quickstart(**diffusion: Any) -> dict[str, Any]:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["diffusion"] = {**data.get("diffusion", {}), **diffusion}
    return data


def _shape(study: Any) -> tuple:
    return ([(t.id, t.key()) for t in study.tokenizer_trials], [d.key() for d in study.diffusion_trials],
            study.diffusion_seeds)


@pytest.mark.parametrize("allocation", ["all", {"mode": "all"}])
def test_allocation_all_is_todays_study(allocation: Any) -> None:
    today = parse_study(_quickstart())
    same = parse_study(_quickstart(allocation=allocation))
    assert _shape(same) == _shape(today) and len(today.diffusion_trials) > 0
    assert today.allocation is None and same.allocation is None


def test_proxy_allocation_keeps_the_trials_and_parses() -> None:
    study = parse_study(_quickstart(allocation={"mode": "proxy", "budget": {"trials": 0.3, "gpu_hours": 5},
                                                "fidelity": {"reduction_factor": 2}}))
    assert _shape(study) == _shape(parse_study(_quickstart()))
    spec = study.allocation
    assert spec is not None and spec.budget.max_trials(20) == 6 and spec.fidelity.reduction_factor == 2
    assert spec.budget.max_trials(2) == 1  # a fraction never rounds to nothing


@pytest.mark.parametrize(("allocation", "where", "says"), [
    ("some", "diffusion.allocation", "all, proxy"),
    ({"mode": "bandit"}, "diffusion.allocation.mode", "allowed: all, proxy"),
    ({"mode": "all", "budget": {"trials": 3}}, "diffusion.allocation", "no other keys"),
    ({"budget": {"trials": 1.5}}, "diffusion.allocation.budget.trials", "fraction in (0, 1]"),
    ({"budget": {"trials": 0}}, "diffusion.allocation.budget.trials", "positive count"),
    ({"budgets": {}}, "diffusion.allocation.budgets", "allowed: acquisition, budget"),
    ({"features": ["gen/gfid"]}, "diffusion.allocation.features", "latent/ or recon/"),
    ({"acquisition": {"top_weight": 0, "correlation_weight": 0}}, "diffusion.allocation.acquisition", "both be 0"),
    ({"features": ["latent/velocity/viv"], "calibration": {"by": "recon/psnr"}}, "diffusion.allocation",
     "allowed: latent/velocity/viv"),
])
def test_bad_allocation_is_one_line_naming_the_key(allocation: Any, where: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_study(_quickstart(allocation=allocation), "study.yaml")
    assert str(err.value).startswith(f"study.yaml: {where}:") and says in str(err.value)
    assert "\n" not in str(err.value)


def test_fidelity_refuses_data_parallel_diffusion_trials() -> None:
    """ASHA reads every checkpoint's gFID from the Tune trial; a data-parallel trial reports only at its end."""
    data = _quickstart(allocation={"fidelity": {"reduction_factor": 2}})
    data["resources"] = {"diffusion": {"cpu": 2, "workers": 2}}
    with pytest.raises(ConfigError) as err:
        parse_study(data, "study.yaml")
    assert str(err.value).startswith("study.yaml: diffusion.allocation.fidelity:") and "workers: 1" in str(err.value)
    data["diffusion"]["allocation"] = "proxy"  # without fidelity, data-parallel diffusion trials are fine
    assert parse_study(data, "study.yaml").resources.diffusion.workers == 2


def test_tokenizer_search_block() -> None:
    data = _quickstart()
    data["tokenizers"] = {"regularizer": "lcr", "params": "search",
                          "search": {"objective": "latent/velocity/viv", "algorithm": "random", "num_samples": 4,
                                     "constraint": "recon/psnr >= 20"}}
    study = parse_study(data)
    spec = study.search
    assert spec is not None and spec.constraint_parts() == ("recon/psnr", ">=", 20.0)
    assert [t.regularizer for t in study.tokenizer_trials] == ["lcr"]  # `search` is no trial field
    data["tokenizers"]["search"]["algorithm"] = "grid"
    with pytest.raises(ConfigError, match=r"tokenizers\.search\.algorithm"):
        parse_study(data)


def test_docs_proxy_study_is_valid() -> None:
    section = (QUICKSTART.parents[1] / "docs" / "proxy.md").read_text()
    block = section[section.index("```yaml") + len("```yaml"):section.index("```\n", section.index("```yaml") + 7)]
    study = parse_study(yaml.safe_load(block), "docs/proxy.md")
    spec = study.allocation
    assert spec is not None and spec.budget.trials == 0.3 and spec.fidelity is not None
    assert len(study.tokenizer_trials) == 6


@pytest.mark.parametrize(("key", "block"), [("allocation", "diffusion.allocation"), ("search", "tokenizers.search")])
def test_a_search_block_at_the_top_level_is_an_unknown_key_naming_its_block(key: str, block: str) -> None:
    """The typed fields `load_study` sets are no keys of the file: never validated as if the file could set them."""
    data = {**_quickstart(), key: "proxy"}
    with pytest.raises(ConfigError) as err:
        parse_study(data, "study.yaml")
    assert str(err.value).startswith(f"study.yaml: {key}: unknown key; it goes in {block}; allowed: ")
    assert f" {key}," not in str(err.value) and "tokenizer_trials" not in str(err.value)
