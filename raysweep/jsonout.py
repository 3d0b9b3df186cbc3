"""Strict JSON for `--json` output: Python's `json.dumps` writes NaN/Infinity, which no other JSON parser accepts.

A non-finite number becomes `null`; inside a mapping a sibling key `<key>_undefined` says why (`"nan"`, `"inf"`,
`"-inf"`), so a reader can tell "undefined" from "absent". numpy scalars and arrays become plain numbers and lists,
paths and other objects their `str`. Use `dumps` (or `print_json`) for anything a command prints with `--json`.
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

UNDEFINED_SUFFIX = "_undefined"


def _reason(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python numbers/lists (without importing numpy when it is not loaded)."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and type(value).__module__ == "numpy":
        return tolist()
    return value


def json_safe(obj: Any) -> Any:
    """A copy of `obj` that `json.dumps(..., allow_nan=False)` accepts; see the module docstring for the rules."""
    obj = _plain(obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            value = _plain(value)
            out[str(key)] = json_safe(value)
            if isinstance(value, float) and not math.isfinite(value):
                out.setdefault(f"{key}{UNDEFINED_SUFFIX}", _reason(value))
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    return str(obj)


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Valid JSON (RFC 8259: no NaN/Infinity) of `obj`."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def print_json(obj: Any) -> None:
    print(dumps(obj), file=sys.stdout)
