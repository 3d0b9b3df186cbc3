"""raysweep: which latent spaces do diffusion models learn best? Tokenizer x diffusion studies on Ray + MLflow.

From Python: `raysweep.load`, `plan`, `run`, `status`, `table`, `analyze_table` (raysweep.api). Importing raysweep
loads none of Ray, MLflow, pyarrow, pydantic or torch: each name loads its module on first use (raysweep.lazy).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from raysweep.lazy import lazy_exports

if TYPE_CHECKING:
    from raysweep.api import analyze_table, load, plan, run, status, table

__version__ = "0.4.0"
__all__ = ["analyze_table", "load", "plan", "run", "status", "table"]
__getattr__ = lazy_exports(__name__, __file__)
