"""Regularizers: the interface (`base.py`, plain torch), their pydantic `Params` (`params.py`) and the registry
(`registry.py`, which imports every regularizer). Names load on first use (`raysweep.lazy`): the trainer needs the
interface alone, so training runs where pydantic is not installed (the bare GPU box `benchmarks/gpu_check.py` is
for)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from raysweep.lazy import lazy_exports

if TYPE_CHECKING:
    from raysweep.tokenizers.regularizers.base import RegContext, Regularizer
    from raysweep.tokenizers.regularizers.params import StrictParams
    from raysweep.tokenizers.regularizers.registry import (
        REGULARIZERS,
        build_regularizer,
        register,
        regularizer_class,
        validate_params,
    )

__all__ = ["REGULARIZERS", "RegContext", "Regularizer", "StrictParams", "build_regularizer", "register",
           "regularizer_class", "validate_params"]
__getattr__ = lazy_exports(__name__, __file__)
