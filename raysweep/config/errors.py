"""One-line configuration errors: file, key path, what is wrong, what is allowed."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class ConfigError(ValueError):
    """A study file is invalid. `str(err)` is the single line the CLI prints (exit code 2)."""

    def __init__(self, source: str, key_path: str, message: str) -> None:
        self.source = source
        self.key_path = key_path
        self.message = message
        where = f"{source}: {key_path}" if key_path else source
        super().__init__(f"{where}: {message}")


def format_key_path(loc: Sequence[str | int]) -> str:
    """`('tokenizers', 'variants', 2, 'regularizer')` -> `tokenizers.variants[2].regularizer`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def printable(text: str) -> str:
    """`text` safe for a terminal line: control and other non-printable characters as Python escapes (`\\x1b`,
    `\\n`), so a file name or value can neither break the one-line error nor drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def allowed(values: Iterable[object]) -> str:
    """Render allowed values for an error message."""
    return ", ".join(sorted(str(v) for v in values))


# strict-mode type errors (spec.Strict): what the field takes, said in the user's words
EXPECTED = {"int_type": "an integer", "float_type": "a finite number", "bool_type": "true or false",
            "string_type": "a string"}


def type_message(kind: str, value: Any) -> str:
    """`Input should be an integer, not the boolean true` (pydantic says only "a valid integer")."""
    if isinstance(value, bool):
        got = f"the boolean {str(value).lower()}"
    elif isinstance(value, str):
        got = f"the string {value!r}" + (" (write numbers unquoted)" if kind in ("int_type", "float_type") else "")
    elif isinstance(value, (int, float)):
        got = f"{value!r}" + (" (write whole numbers without a decimal point)"
                               if isinstance(value, float) and kind == "int_type" else "")
    else:
        got = f"a {yaml_kind(value)}"
    return f"Input should be {EXPECTED[kind]}, not {got}"


def yaml_kind(value: Any) -> str:
    return {dict: "mapping", list: "list", type(None): "null"}.get(type(value), type(value).__name__)
