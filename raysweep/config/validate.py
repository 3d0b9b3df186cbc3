"""A mapping -> a pydantic model, pydantic's first error as our one line (file, key path, allowed keys)."""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from raysweep.config.errors import EXPECTED, ConfigError, allowed, format_key_path, type_message

M = TypeVar("M", bound=BaseModel)


def validate_model(model: type[M], data: Any, source: str, prefix: str = "") -> M:
    """`model(**data)`, or a `ConfigError` naming `source` and the key path under `prefix`."""
    if not isinstance(data, dict):
        raise ConfigError(source, prefix, f"expected a mapping, got {type(data).__name__}")
    try:
        return model(**data)
    except ValidationError as err:
        raise _first_error(err, model, source, prefix) from None
    except ValueError as err:  # raised outside pydantic's wrapping, e.g. by a registry lookup
        raise ConfigError(source, prefix, str(err)) from None


def _first_error(err: ValidationError, model: type[BaseModel], source: str, prefix: str) -> ConfigError:
    """Turn pydantic's first error into our one-liner, listing allowed keys for unknown ones."""
    e = err.errors()[0]
    loc = [p for p in e["loc"] if p != "__root__"]
    path = format_key_path([*([prefix] if prefix else []), *loc])
    if e["type"] == "extra_forbidden":
        return ConfigError(source, path, f"unknown key; allowed: {allowed(public_fields(model, loc[:-1]))}")
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "missing":
        msg = "required key is missing"
    elif e["type"] in EXPECTED:
        msg = type_message(e["type"], e.get("input"))
    return ConfigError(source, path, msg)


def public_fields(model: type[BaseModel], loc: list[str | int] | None = None) -> list[str]:
    """The keys a study file may give the nested model at `loc` (fields set by raysweep, `exclude`d, are none)."""
    current: Any = model
    for part in loc or []:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return [name for name, f in getattr(current, "model_fields", {}).items() if not f.exclude]
