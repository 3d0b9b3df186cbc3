"""Search-space values in study YAML and their resolution through Ray Tune's own variant generator.

Any scalar in a `tokenizers` or `diffusion` block may be a search domain instead of a literal:

    lr: {loguniform: [1.0e-4, 1.0e-3]}
    regularizer: {grid: [baseline, eq]}
    params: {weight: {choice: [0.02, 0.05]}}

`grid` is a cartesian product, the others are drawn `num_samples` times. Resolution happens once, on the driver,
with a seed from the study file, so `raysweep plan` shows exactly the trials `raysweep run` will launch and each
resolved trial can be keyed by the hash of its concrete config.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from raysweep.config.errors import ConfigError, allowed

MAX_TRIALS = 10_000  # trials one block may resolve to: a typo'd num_samples or grid must not hang `validate`
DOMAIN_KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "quniform")
BLOCK_KEYS = ("variants", "num_samples")  # keys of a trial block that are not trial fields
# a tokenizer param (or all `params`) set to this sweeps the regularizer's declared search_space; as a key of the
# tokenizers block, a Ray Tune search over those domains (config/allocation.py TokenizerSearch)
SEARCH = "search"


def is_domain(value: Any) -> bool:
    """A one-key mapping whose key is a domain kind."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DOMAIN_KINDS


def _check_domain(kind: str, args: Any, source: str, path: str) -> None:
    if kind in ("grid", "choice"):
        if not isinstance(args, list) or not args:
            raise ConfigError(source, path, f"'{kind}' needs a non-empty list of values")
        return
    bounds = {"uniform": 2, "loguniform": 2, "randint": 2, "quniform": 3}[kind]
    if not isinstance(args, list) or len(args) != bounds or not all(isinstance(a, (int, float)) for a in args):
        raise ConfigError(source, path, f"'{kind}' needs a list of {bounds} numbers, got {args!r}")
    if args[0] >= args[1]:
        raise ConfigError(source, path, f"'{kind}' needs lower < upper, got {args[0]} >= {args[1]}")
    if kind == "loguniform" and args[0] <= 0:
        raise ConfigError(source, path, f"'loguniform' needs a positive lower bound, got {args[0]}")


def to_tune(tree: Any, source: str = "<study>", path: str = "") -> Any:
    """Replace every domain mapping in a nested dict/list by the matching `ray.tune` search-space object."""
    from ray import tune

    if is_domain(tree):
        kind, args = next(iter(tree.items()))
        _check_domain(kind, args, source, path)
        if kind == "grid":
            return tune.grid_search(list(args))
        if kind == "choice":
            return tune.choice(list(args))
        return getattr(tune, kind)(*args)
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(key, str) and key in DOMAIN_KINDS:
                raise ConfigError(source, f"{path}.{key}".lstrip("."),
                                  f"a search domain must be the only key of its mapping; allowed kinds: "
                                  f"{allowed(DOMAIN_KINDS)}")
        return {k: to_tune(v, source, f"{path}.{k}".lstrip(".")) for k, v in tree.items()}
    if isinstance(tree, list):
        return [to_tune(v, source, f"{path}[{i}]") for i, v in enumerate(tree)]
    return tree


def resolve(tree: dict[str, Any], num_samples: int, seed: int, source: str = "<study>",
            path: str = "") -> list[dict[str, Any]]:
    """Expand grids and draw random domains with Tune's variant generator; deterministic for a seed."""
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    space = to_tune(copy.deepcopy(tree), source, path)
    rng = np.random.RandomState(seed)
    out: list[dict[str, Any]] = []
    for _ in range(num_samples):
        for _, resolved in generate_variants(space, random_state=rng):
            out.append(resolved)
            if len(out) > MAX_TRIALS:
                raise ConfigError(source, path, f"resolves to more than {MAX_TRIALS} trials (num_samples x grid "
                                                "sizes); split the study")
    return out


def has_random_domain(tree: Any) -> bool:
    """Whether drawing more than one sample can produce different trials."""
    if is_domain(tree):
        return next(iter(tree)) != "grid"
    if isinstance(tree, dict):
        return any(has_random_domain(v) for v in tree.values())
    if isinstance(tree, list):
        return any(has_random_domain(v) for v in tree)
    return False


def declared_search(trial: dict[str, Any], source: str, path: str) -> dict[str, Any]:
    """`params: search` (every declared domain, explicit params kept) or `params: {p: search}` (that one) ->
    the regularizer's own `search_space`, so a sweep never copies (and drifts from) the file that declares it."""
    from raysweep.tokenizers.regularizers import regularizer_class

    params = trial.get("params")
    if params != SEARCH and not (isinstance(params, dict) and SEARCH in params.values()):
        return trial
    try:
        declared = regularizer_class(str(trial.get("regularizer", "baseline"))).search_space
    except ValueError as err:
        raise ConfigError(source, f"{path}.regularizer", str(err)) from None
    asked = dict.fromkeys(declared, SEARCH) if params == SEARCH else params
    unknown = [k for k, v in asked.items() if v == SEARCH and k not in declared]
    if unknown or not declared:
        raise ConfigError(source, f"{path}.params.{unknown[0] if unknown else ''}".rstrip("."),
                          f"'{SEARCH}' needs a declared search_space; regularizer '{trial.get('regularizer')}' "
                          f"declares: {', '.join(declared) or '(none)'}")
    return {**trial, "params": {k: declared[k] if v == SEARCH else v for k, v in asked.items()}}


def search_space(block: Mapping[str, Any], source: str = "<study>") -> dict[str, Any]:
    """The tokenizer block's trial fields with their search domains (declared ones expanded), for Tune."""
    trial = {k: v for k, v in block.items() if k not in (*BLOCK_KEYS, SEARCH)}
    return declared_search(trial, source, "tokenizers")
