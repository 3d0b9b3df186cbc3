"""Lazy package exports (PEP 562): a package re-exports its submodules' names without importing them up front.

The config layer validates names against registries that live in heavy packages (`raysweep.features` pulls
torch-fidelity and torchvision, `raysweep.data` torch and pyarrow); importing a submodule runs its package's
`__init__`, so an eager `__init__` made every `raysweep validate` / `plan` / `status` pay seconds of imports.

Which submodule defines a name is read from the package's own `if TYPE_CHECKING:` imports (parsed, not run), so
that block stays the one list a type checker and this loader share, and a name imports only its own submodule."""
from __future__ import annotations

import ast
import functools
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _type_checking_sources(init_file: str) -> dict[str, str]:
    """{exported name: absolute module} from the `from X import a, b` lines under `if TYPE_CHECKING:`."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    sources: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    sources.update({a.asname or a.name: stmt.module for a in stmt.names})
    return sources


def lazy_exports(package: str, init_file: str) -> Callable[[str], Any]:
    """The package's module-level `__getattr__`: a name of its `TYPE_CHECKING` imports loads from its submodule on
    first use, once (it is then a module global)."""
    sources = functools.cache(_type_checking_sources)

    def __getattr__(name: str) -> Any:
        module = sources(init_file).get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module), name)
        importlib.import_module(package).__dict__[name] = value
        return value

    return __getattr__
