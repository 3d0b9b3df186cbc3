"""Regularizer registry. To add one: write `regularizers/<name>.py` with a `Regularizer` subclass and list it in the
tuple below (or call `register(cls)` from code outside this package); README "Add a regularizer" walks through it.
It imports every regularizer, and with them pydantic (their `Params`)."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from raysweep.tokenizers.regularizers.base import Regularizer
from raysweep.tokenizers.regularizers.baseline import Baseline
from raysweep.tokenizers.regularizers.eq import Equivariance
from raysweep.tokenizers.regularizers.lcr import LocalCorrelation
from raysweep.tokenizers.regularizers.lmr import LatentMaskedReconstruction
from raysweep.tokenizers.regularizers.mae import TokenMasking
from raysweep.tokenizers.regularizers.params import StrictParams
from raysweep.tokenizers.regularizers.repa import Repa
from raysweep.tokenizers.regularizers.vf import Mcos, Mdms, Vf

REGULARIZERS: dict[str, type[Regularizer[Any]]] = {cls.name: cls for cls in (
    Baseline, Equivariance, LocalCorrelation, LatentMaskedReconstruction, Repa, Vf, Mcos, Mdms, TokenMasking,
)}


def register(cls: type[Regularizer[Any]]) -> type[Regularizer[Any]]:
    """Add `cls` under its `name`, as the tuple above does for the built-in ones; ValueError if the name is taken."""
    if cls.name in REGULARIZERS and REGULARIZERS[cls.name] is not cls:
        raise ValueError(f"regularizer name {cls.name!r} is taken by {REGULARIZERS[cls.name].__name__}; "
                         f"taken names: {', '.join(sorted(REGULARIZERS))}")
    REGULARIZERS[cls.name] = cls
    return cls


def regularizer_class(name: str) -> type[Regularizer[Any]]:
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {name!r}; allowed: {', '.join(sorted(REGULARIZERS))}")
    return REGULARIZERS[name]


def validate_params(name: str, params: dict[str, Any]) -> StrictParams | None:
    """Parse a regularizer's params (None for one that takes none); an unknown name, unknown param or invalid value
    raises ValueError naming what is allowed."""
    cls = regularizer_class(name)
    if cls.Params is None:
        if params:
            raise ValueError(f"regularizer {name!r}: {', '.join(sorted(params))}: it takes no params; allowed params "
                             "(defaults): (none)")
        return None
    try:
        return cls.Params(**params)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in err.errors())
        allowed = ", ".join(f"{k}={v.default!r}" for k, v in cls.Params.model_fields.items()) or "(none)"
        raise ValueError(f"regularizer {name!r}: {problems}; allowed params (defaults): {allowed}") from None


def build_regularizer(name: str, params: dict[str, Any] | None = None) -> Regularizer[Any]:
    """An unbound regularizer; the trainer binds it to the tokenizer's latent width and the feature width."""
    return regularizer_class(name)(validate_params(name, params or {}))
