"""One-line configuration errors: file, key path, what is wrong, what is allowed."""
from __future__ import annotations

from collections.abc import Iterable, Sequence


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
