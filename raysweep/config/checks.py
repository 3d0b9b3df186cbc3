"""Checks of a study's blocks against each other, on the resolved trials: every backbone's patch size against every
tokenizer's latent grid, a tokenizer search against the metrics the study computes, a backbone ladder's cheap tier.
Each fails with the one line of `ConfigError` (file, key, allowed values)."""
from __future__ import annotations

from typing import Any

from raysweep.config.allocation import FIDELITY_KEY, TokenizerSearch
from raysweep.config.errors import ConfigError, allowed
from raysweep.config.search import BLOCK_KEYS, SEARCH, has_random_domain, is_domain
from raysweep.config.spec import DiffusionTrial, StudySpec
from raysweep.config.validate import validate_model


def tokenizer_metric_keys(study: StudySpec) -> list[str]:
    """The scalar keys a trained tokenizer of `study` gets (reconstruction, and the latent and model metrics the
    study computes from latents or the tokenizer): what a search objective or constraint may name."""
    from raysweep.metrics.registry import metric_info

    keys = ["recon/psnr", "recon/rfid"]
    for name in (*study.metrics.consuming("latents"), *study.metrics.consuming("tokenizer")):
        metric = metric_info(name).build(name, **study.metrics.params.get(name, {}))
        keys += list(metric.higher_is_better)  # its headline scalars, at the study's parameters
    return list(dict.fromkeys(keys))


def check_tokenizer_search(study: StudySpec, spec: TokenizerSearch, space: dict[str, Any]) -> None:
    """What the search needs of the rest of the study: the tokenizer block has domains to search (`space`, and is no
    list of variants), the objective and the constraint name metrics the study computes for a tokenizer."""
    source, block = study.source, study.tokenizers or {}
    for key in BLOCK_KEYS:
        if key in block:
            raise ConfigError(source, f"tokenizers.{key}", f"not used with tokenizers.{SEARCH}: the search trains "
                              f"{SEARCH}.num_samples tokenizers drawn from the block's own domains; remove it")

    def grids(tree: Any, path: str) -> list[str]:
        if is_domain(tree):
            return [path] if "grid" in tree else []
        if isinstance(tree, dict):
            return [p for k, v in tree.items() for p in grids(v, f"{path}.{k}")]
        return []

    grid = grids(space, "tokenizers")
    if grid:
        raise ConfigError(source, grid[0], "a search takes 'choice' (a search algorithm draws from it), not 'grid'")
    if not has_random_domain(space):
        raise ConfigError(source, f"tokenizers.{SEARCH}", "the tokenizers block has no search domain; give a field "
                          "a domain (uniform, loguniform, choice, randint, quniform) or set `params: search`")
    keys = tokenizer_metric_keys(study)
    if spec.objective not in keys:
        raise ConfigError(source, f"tokenizers.{SEARCH}.objective",
                          f"unknown objective {spec.objective!r}; allowed: {allowed(keys)}")
    parts = spec.constraint_parts()
    if parts is not None and parts[0] not in keys:
        raise ConfigError(source, f"tokenizers.{SEARCH}.constraint",
                          f"unknown metric {parts[0]!r}; allowed: {allowed(keys)}")


def ladder_trial(study: StudySpec, ladder: dict[str, Any]) -> DiffusionTrial:
    """The cheap tier's diffusion trial of a backbone ladder: `fidelity.backbone` and the other trial fields given
    there (`ladder`), over the fields the study's diffusion block sets itself (at their first trial's values: steps,
    batch size, patch size...), the rest from the cheap backbone's recipe. It must be a known backbone, not one the
    study trains as its target, with a patch size that divides every tokenizer's latent grid; a bad field is a
    ConfigError on `diffusion.allocation.fidelity.<field>`."""
    from raysweep.diffusion.backbones import BACKBONES

    target = study.diffusion_trials[0]
    own = {k: getattr(target, k) for k in study.diffusion or {} if k in DiffusionTrial.model_fields and k != "backbone"}
    cheap = validate_model(DiffusionTrial, {**own, **ladder}, study.source, FIDELITY_KEY)
    targets = sorted({d.backbone for d in study.diffusion_trials})
    if cheap.backbone in targets:
        raise ConfigError(study.source, f"{FIDELITY_KEY}.backbone",
                          f"the cheap tier's backbone '{cheap.backbone}' is a target backbone of the study "
                          f"(diffusion.backbone: {', '.join(targets)}); allowed: "
                          f"{allowed(b for b in BACKBONES if b not in targets)}")
    check_patch_sizes(study, study.source, [cheap], FIDELITY_KEY)
    return cheap


def _latents_of(study: StudySpec) -> list[tuple[str, str]]:
    """(where, latent config) of every tokenizer the study can train: its trials, and a search's `latent` choices."""
    out = [(f"tokenizers (trial {i}, '{t.id}').latent", t.latent) for i, t in enumerate(study.tokenizer_trials)]
    domain = (study.tokenizers or {}).get("latent") if study.search is not None else None
    if isinstance(domain, dict) and len(domain) == 1:
        values = next(iter(domain.values()))
        out += [(f"tokenizers.latent.{next(iter(domain))}[{j}]", v) for j, v in enumerate(values or [])
                if isinstance(v, str)]
    return out


def check_patch_sizes(study: StudySpec, source: str, trials: list[DiffusionTrial] | None = None,
                      key: str | None = None) -> None:
    """A backbone patchifies the latent grid (image_size / down): its patch size must divide it, for every
    tokenizer x diffusion pair (the transformer refuses it, but only once that tokenizer has trained). `trials`:
    other diffusion trials than the study's (a backbone ladder's cheap tier), found at `key` in the file."""
    from raysweep.tokenizers.latent_config import parse_latent_config

    size = study.dataset.image_size
    grids: dict[int, tuple[str, str]] = {}  # one tokenizer per latent grid size: the check is per grid x patch
    for where, latent in _latents_of(study):
        try:
            grids.setdefault(size // parse_latent_config(latent).down, (where, latent))
        except ValueError as err:
            raise ConfigError(source, where, str(err)) from None
    trials = study.diffusion_trials if trials is None else trials
    patches = {d.patch_size: j for j, d in reversed(list(enumerate(trials)))}
    for grid, (where, latent) in grids.items():
        for patch_size, j in patches.items():
            d = trials[j]
            if grid % patch_size:
                path = key or (f"diffusion (trial {j})" if len(trials) > 1 else "diffusion")
                raise ConfigError(source, f"{path}.patch_size",
                                  f"patch_size {d.patch_size} does not divide the {grid}x{grid} latent grid of "
                                  f"{where.rsplit('.latent', 1)[0]} (latent {latent}, dataset.image_size {size}); "
                                  f"allowed: divisors of {grid}")
