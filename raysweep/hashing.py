"""Stable content hashes: every stage output is keyed by the hash of the config that produced it."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal configs hash equally across runs and machines."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def plain(obj: Any) -> Any:
    """`obj` as its canonical JSON reads back (tuples as lists, keys as strings): what a result records of it."""
    return json.loads(canonical_json(obj))


def config_hash(obj: Any, length: int = 12) -> str:
    """Short sha256 of the canonical JSON of a config."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`: MLflow params are flat key/value pairs."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}
