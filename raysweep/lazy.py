"""Lazy package exports (PEP 562): a package re-exports its submodules' names without importing them up front.

The config layer validates names against registries that live in heavy packages (`raysweep.features` pulls
torch-fidelity and torchvision, `raysweep.data` torch and pyarrow); importing a submodule runs its package's
`__init__`, so an eager `__init__` made every `raysweep validate` / `plan` / `status` pay seconds of imports."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any


def lazy_exports(package: str, submodules: Sequence[str], names: Sequence[str]) -> Callable[[str], Any]:
    """The package's module-level `__getattr__`: `names` load from the first of `submodules` that defines them,
    once (the value is then a module global)."""
    exported = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name not in exported:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        namespace = importlib.import_module(package).__dict__
        for sub in submodules:
            module = importlib.import_module(f"{package}.{sub}")
            if hasattr(module, name):
                namespace[name] = value = getattr(module, name)
                return value
        raise AttributeError(f"'{package}.{name}' is exported but defined in none of {list(submodules)}")

    return __getattr__
