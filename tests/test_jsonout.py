"""`--json` output is strict JSON (RFC 8259): no NaN/Infinity tokens, undefined values are null with a reason."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raysweep.cli import main
from raysweep.jsonout import UNDEFINED_SUFFIX, dumps


def _strict(text: str) -> Any:
    """Parse like a non-Python reader: NaN, Infinity and -Infinity are syntax errors."""
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_become_null_with_reason() -> None:
    obj = {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": np.float32(-np.inf), "e": np.arange(3)},
           "f": 2.5, "g": Path("/x"), "h": (np.int64(4), True, None)}
    with pytest.raises(ValueError):
        json.dumps(obj, allow_nan=False, default=str)  # what the helper exists for

    out = _strict(dumps(obj))

    assert out["a"] is None and out[f"a{UNDEFINED_SUFFIX}"] == "nan"
    assert out["b"] == [1.0, None]
    assert out["c"]["d"] is None and out["c"][f"d{UNDEFINED_SUFFIX}"] == "-inf"
    assert out["c"]["e"] == [0, 1, 2] and out["f"] == 2.5 and out["g"] == "/x" and out["h"] == [4, True, None]
    assert "f" + UNDEFINED_SUFFIX not in out  # finite values get no reason


def test_finite_structures_round_trip_unchanged() -> None:
    obj = {"x": [1, 2.0, "s", {"y": -0.5}], "z": None}
    assert _strict(dumps(obj)) == obj


@pytest.mark.parametrize("command", ["plan", "status"])
def test_plan_and_status_json_parse_strictly(command: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\nstorage: {{root: {tmp_path}/store}}\ndataset: {{image_size: 16}}\n"
                     "tokenizers: {steps: 2, variants: [{regularizer: baseline}, {regularizer: eq}]}\n")
    if command == "status":  # status reads a study that has run: its tracking store exists
        from raysweep.tracking import Tracker

        Tracker(f"sqlite:///{tmp_path}/store/mlflow.db", "s")

    assert main([command, "--json", str(study)]) == 0
    out = _strict(capsys.readouterr().out)

    assert out["study"] == "s" and len(out["tokenizers" if command == "status" else "tokenizer_trials"]) == 2
