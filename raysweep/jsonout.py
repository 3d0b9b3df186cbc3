"""JSON for stdout that jq, browsers and `json.loads(..., parse_constant=...)` accept: Python's `json` writes
NaN and Infinity by default, which are not JSON. Non-finite numbers become null (the caller says why beside
them); numpy scalars and arrays become plain JSON numbers and lists."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """`value` with numpy types made plain and every non-finite float replaced by None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.bool_, np.integer)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def dumps(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text of `value` (`allow_nan=False`: a non-finite number that slipped through raises)."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)
