"""`import raysweep` stays light (the Python face end to end, with the notebook example, is the last step of
tests/test_e2e_study.py: it reuses that study's finished store)."""
from __future__ import annotations

import subprocess
import sys


def test_import_raysweep_loads_no_heavy_library() -> None:
    code = ("import sys, raysweep; raysweep.__all__; "
            "print(sorted(m for m in ('ray', 'mlflow', 'pyarrow', 'pydantic', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
