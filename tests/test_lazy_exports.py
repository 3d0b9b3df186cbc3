"""Lazy package exports: every exported name resolves to its submodule's object, and loading a study (the config
layer's checks against the feature-network registry) does not import the scoring stack."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["raysweep.data", "raysweep.features"])
def test_every_exported_name_is_its_submodules_object(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        source = importlib.import_module(value.__module__) if hasattr(value, "__module__") else None
        assert source is None or not source.__name__.startswith(package) or getattr(source, name) is value, name
    with pytest.raises(AttributeError, match="no attribute 'not_exported'"):
        module.not_exported  # noqa: B018


def test_loading_a_study_does_not_import_the_scoring_stack() -> None:
    code = ("import sys; from raysweep.config import load_study; "
            f"load_study({str(ROOT / 'experiments' / 'quickstart.yaml')!r}); "
            "print(sorted(m for m in ('torch_fidelity', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout
