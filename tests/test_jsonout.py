"""`raysweep.jsonout`: strict JSON whatever numpy hands over (NaN and inf become null, at any depth)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from raysweep.jsonout import dumps, json_safe


def refuse(token: str) -> None:
    raise AssertionError(f"not JSON: {token}")


def test_non_finite_numbers_become_null_at_any_depth() -> None:
    value = {"a": float("nan"), "b": [1.5, np.float32(np.inf), {"c": np.array([np.nan, 2.0])}],
             "d": (np.int64(3), np.bool_(True)), 4: -np.inf}
    text = dumps(value)
    assert json.loads(text, parse_constant=refuse) == {"a": None, "b": [1.5, None, {"c": [None, 2.0]}],
                                                      "d": [3, True], "4": None}


def test_finite_values_are_unchanged() -> None:
    value = {"x": [0.1, 1e-300, -2.5e300], "s": "NaN", "n": None}
    assert json.loads(dumps(value)) == value and json_safe(np.float64(0.1)) == 0.1


def test_an_unknown_object_is_refused_not_stringified() -> None:
    with pytest.raises(TypeError):
        dumps({"x": object()})
