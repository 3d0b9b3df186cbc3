"""docs/add-a-regularizer.md, followed literally: its file goes into a temporary directory on the regularizers package
path, its registration block runs as written, its study YAML is loaded, validated, and trained one step."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import raysweep.tokenizers.regularizers as regularizers_pkg
from raysweep.config import ConfigError, load_study
from raysweep.tokenizers import REGULARIZERS, RegContext, TokenizerTrainer, build_regularizer, build_tokenizer

PAGE = Path(__file__).resolve().parents[1] / "docs" / "add-a-regularizer.md"


def section_blocks() -> list[tuple[str, str]]:
    """(language, code) of the fenced blocks between the add-a-regularizer markers."""
    text = PAGE.read_text()
    section = text.split("<!-- add-a-regularizer:start -->")[1].split("<!-- add-a-regularizer:end -->")[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


@pytest.fixture
def tv_package(tmp_path, monkeypatch):
    """The page's file at `raysweep/tokenizers/regularizers/tv.py`, served from tmp_path; cleaned up after."""
    (file_block, register_block, yaml_block) = section_blocks()
    assert [file_block[0], register_block[0], yaml_block[0]] == ["python", "python", "yaml"]
    (tmp_path / "tv.py").write_text(file_block[1])
    monkeypatch.setattr(regularizers_pkg, "__path__", [*regularizers_pkg.__path__, str(tmp_path)])
    yield register_block[1], yaml_block[1]
    REGULARIZERS.pop("tv", None)
    sys.modules.pop("raysweep.tokenizers.regularizers.tv", None)


def test_readme_regularizer_registers_validates_and_trains(tv_package, tmp_path) -> None:
    register_code, study_yaml = tv_package
    assert "tv" not in REGULARIZERS
    exec(compile(register_code, "docs/add-a-regularizer.md", "exec"), {})
    assert REGULARIZERS["tv"].__name__ == "LatentTV"

    path = tmp_path / "study.yaml"
    path.write_text(study_yaml)
    study = load_study(path)
    assert [t.regularizer for t in study.tokenizer_trials] == ["baseline", "tv", "tv"]  # "lists 3 tokenizers"
    weights = [t.params["weight"] for t in study.tokenizer_trials[1:]]
    assert all(1e-3 <= w <= 1e-1 for w in weights) and weights[0] != weights[1]

    for trial in study.tokenizer_trials[1:]:
        torch.manual_seed(trial.seed)
        model = build_tokenizer(trial.architecture, trial.latent, study.dataset.image_size)
        trainer = TokenizerTrainer(model, build_regularizer(trial.regularizer, trial.params), batch_size=4)
        logs = trainer.train_step(torch.rand(4, 3, 16, 16) * 2 - 1)
        assert logs["tv"] > 0 and all(np.isfinite(v) for v in logs.values())

    # "exactly zero for a spatially constant latent"
    reg = build_regularizer("tv", {"weight": 1.0})
    z = torch.randn(2, 4, 1, 1).expand(2, 4, 8, 8)
    ctx = RegContext(torch.zeros(2, 3, 16, 16), None, z, None, None, torch.Generator(), torch.zeros(()))  # type: ignore[arg-type]
    assert reg.loss(ctx)[0].item() == 0.0

    path.write_text(study_yaml.replace("weight: search", "weight: -1"))
    with pytest.raises(ConfigError, match="regularizer 'tv'.*weight.*allowed params") as err:
        load_study(path)
    assert "\n" not in str(err.value)
