"""YAML -> validated, resolved `StudySpec`, with one-line errors naming the file, key path and allowed values."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, TypeVar

from raysweep.config.allocation import parse_allocation, parse_tokenizer_search
from raysweep.config.checks import check_patch_sizes, check_tokenizer_search, ladder_trial
from raysweep.config.errors import ConfigError, allowed
from raysweep.config.search import BLOCK_KEYS, SEARCH, declared_search, has_random_domain, resolve, search_space
from raysweep.config.spec import SEED_LIMIT, DiffusionTrial, StudySpec, TokenizerTrial
from raysweep.config.validate import public_fields, validate_model
from raysweep.config.yamlfile import check_finite, read_yaml

T = TypeVar("T", TokenizerTrial, DiffusionTrial)
log = logging.getLogger(__name__)
ALLOCATION = "allocation"  # diffusion.allocation: how diffusion compute is spread (config/allocation.py)
SEEDS = "seeds"  # tokenizers.seeds / diffusion.seeds: replicates of every trial
PATH_HEADROOM = 256  # characters raysweep may append below a study directory (Tune trial dirs, checkpoints)


def _resolve_block(block: dict[str, Any], model: type[T], source: str, name: str, seed: int,
                   extra_keys: tuple[str, ...] = ()) -> list[T]:
    """Defaults + variants -> resolved search space -> validated trials, in file order. Random draws of one
    variant that coincide are dropped with a warning (the study is still well defined: that trial runs once); any
    other two identical trials are an error naming both entries."""
    if not isinstance(block, dict):
        raise ConfigError(source, name, f"expected a mapping, got {type(block).__name__}")
    num_samples = block.get("num_samples", 1)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(source, f"{name}.num_samples", f"must be a positive integer, got {num_samples!r}")
    variants = block.get("variants", [{}])
    if not isinstance(variants, list) or not variants:
        raise ConfigError(source, f"{name}.variants", "must be a non-empty list of mappings")
    defaults = {k: v for k, v in block.items() if k not in BLOCK_KEYS + extra_keys}
    trials: list[tuple[str, T]] = []
    for i, variant in enumerate(variants):
        path = f"{name}.variants[{i}]" if "variants" in block else name
        if not isinstance(variant, dict):
            raise ConfigError(source, path, f"expected a mapping, got {type(variant).__name__}")
        merged = {**defaults, **variant}
        if isinstance(defaults.get("params"), dict) and isinstance(variant.get("params"), dict):
            merged["params"] = {**defaults["params"], **variant["params"]}
        if model is TokenizerTrial:
            merged = declared_search(merged, source, path)
        random = has_random_domain(merged)
        resolved = resolve(merged, num_samples if random else 1, (seed + i) % SEED_LIMIT, source, path)
        drawn: set[str] = set()
        for j, config in enumerate(resolved):
            trial = validate_model(model, config, source, path)
            check_finite(trial.model_dump(), source, [path])  # strings such as "1e999" that pydantic coerced
            if random and trial.key() in drawn:
                log.warning("%s: %s: draw %d repeats an earlier draw of the same entry; it runs once "
                            "(num_samples %d gave fewer distinct trials)", source, path, j, num_samples)
                continue
            drawn.add(trial.key())
            trials.append((f"{path} (trial {j} of its search space)" if len(resolved) > 1 else path, trial))
    _refuse_duplicates(trials, source)
    return [trial for _, trial in trials]


def _refuse_duplicates(trials: list[tuple[str, T]], source: str) -> None:
    first: dict[str, str] = {}
    for where, trial in trials:
        key = trial.key()
        if key in first:
            raise ConfigError(source, where, f"resolves to the same configuration as {first[key]}; remove the "
                                             "duplicate")
        first[key] = where


def _assign_tokenizer_ids(trials: list[TokenizerTrial], source: str) -> None:
    """Unnamed trials are called after their regularizer, with a hash suffix only where that name is taken."""
    explicit = {t.id for t in trials if t.id is not None}
    unnamed: dict[str, int] = {}
    for t in trials:
        if t.id is None:
            unnamed[t.regularizer] = unnamed.get(t.regularizer, 0) + 1
    seen: dict[str, int] = {}
    for i, t in enumerate(trials):
        if t.id is None:
            unique = unnamed[t.regularizer] == 1 and t.regularizer not in explicit
            t.id = t.regularizer if unique else f"{t.regularizer}-{t.key()[:6]}"
        if t.id in seen:
            raise ConfigError(source, f"tokenizers (trial {i})",
                              f"duplicate tokenizer id '{t.id}' (also trial {seen[t.id]}); ids name trials uniquely")
        seen[t.id] = i


def _seeds(block: dict[str, Any], name: str, source: str) -> list[int] | None:
    """`<block>.seeds`: distinct integers 0 <= seed < 2**32, or None where the block has none."""
    if SEEDS not in block:
        return None
    seeds = block[SEEDS]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise ConfigError(source, f"{name}.seeds", f"must be a non-empty list of integers, got {seeds!r}")
    for i, seed in enumerate(seeds):
        if not 0 <= seed < SEED_LIMIT:
            raise ConfigError(source, f"{name}.seeds[{i}]", f"seed {seed} is out of range; seeds are integers "
                              f"0 <= seed < 2**32")
        if seeds.index(seed) != i:
            raise ConfigError(source, f"{name}.seeds[{i}]", f"seed {seed} is also {name}.seeds"
                              f"[{seeds.index(seed)}]; it would train the same runs twice")
    return seeds


def _replicate(trials: list[TokenizerTrial], block: dict[str, Any], source: str) -> list[TokenizerTrial]:
    """`tokenizers.seeds: [0, 1]` trains every trial once per seed: replicates measure tokenizer-training noise.
    Each replicate is its own job (`<id>-s<seed>`) and shares `<id>` as the analysis' tokenizer id."""
    seeds = _seeds(block, "tokenizers", source)
    if seeds is None:
        return trials
    if SEARCH in block:
        raise ConfigError(source, "tokenizers.seeds", "is not supported with tokenizers.search (a search draws "
                                                      "its own trials); remove one of them")
    where = ["tokenizers"] + [f"tokenizers.variants[{i}]" for i, v in enumerate(block.get("variants") or [])
                              if isinstance(v, dict)]
    for path, entry in zip(where, [block, *[v for v in block.get("variants") or [] if isinstance(v, dict)]]):
        if "seed" in entry:
            raise ConfigError(source, f"{path}.seed", "conflicts with tokenizers.seeds; give the seeds in one place")
    if len(seeds) == 1:
        return [t.model_copy(update={"seed": seeds[0]}) for t in trials]
    return [t.model_copy(update={"seed": s, "id": f"{t.id}-s{s}", "replicate_of": t.id})
            for t in trials for s in seeds]


def parse_study(data: Any, source: str = "<study>") -> StudySpec:
    """Validate a parsed YAML mapping and resolve its search spaces."""
    _refuse_resolved_fields(data, source)
    check_finite(data, source)  # .nan / .inf / 1.0e999 literals, before anything uses them
    study = validate_model(StudySpec, data, source)
    check_finite(study.model_dump(), source)  # numbers pydantic parsed from strings such as "1e999"
    study.source = source
    tokenizers = study.tokenizers or {}
    trials = _resolve_block(tokenizers, TokenizerTrial, source, "tokenizers", study.seed, extra_keys=(SEARCH, SEEDS))
    _assign_tokenizer_ids(trials, source)
    study.tokenizer_trials = _replicate(trials, tokenizers, source)
    diffusion = dict(study.diffusion or {})
    study.diffusion_seeds = _seeds(diffusion, "diffusion", source) or [0]
    study.diffusion_trials = _resolve_block(diffusion, DiffusionTrial, source, "diffusion", study.seed,
                                            extra_keys=(SEEDS, ALLOCATION))
    _parse_search_blocks(study, source)
    _check_cross_fields(study, source)
    return study


# fields of StudySpec that `parse_study` sets; a study file giving one at the top level means the block named here
RESOLVED_FROM = {"allocation": f"diffusion.{ALLOCATION}", "search": f"tokenizers.{SEARCH}"}


def _refuse_resolved_fields(data: Any, source: str) -> None:
    """A key that names a field set by raysweep (the resolved trials, the source, the typed search blocks) is
    unknown at the top level of a study file, never validated as if the file could set it."""
    if not isinstance(data, dict):
        return
    for key in data:
        field = StudySpec.model_fields.get(key) if isinstance(key, str) else None
        if field is not None and field.exclude:
            where = f"; it goes in {RESOLVED_FROM[key]}" if key in RESOLVED_FROM else ""
            raise ConfigError(source, key, f"unknown key{where}; allowed: {allowed(public_fields(StudySpec))}")


def _parse_search_blocks(study: StudySpec, source: str) -> None:
    """`diffusion.allocation` and `tokenizers.search` into their typed fields, checked against the study, once; they
    never change the resolved trials (with a search, the block's resolved trial is only its first draw: what the
    plan estimates a search trial by)."""
    study.allocation = allocation = parse_allocation((study.diffusion or {}).get(ALLOCATION), source)
    study.search = parse_tokenizer_search((study.tokenizers or {}).get(SEARCH), source)
    if study.search is not None:
        space = search_space(study.tokenizers or {}, source)
        check_tokenizer_search(study, study.search, space)
        study.search_space = space
    if allocation is not None and allocation.ladder is not None:
        study.ladder_trial = ladder_trial(study, allocation.ladder)
    if allocation is not None and allocation.fidelity is not None and study.resources.diffusion.workers > 1:
        raise ConfigError(source, f"diffusion.{ALLOCATION}.fidelity",
                          f"needs resources.diffusion.workers: 1, got {study.resources.diffusion.workers}: ASHA "
                          "reads each checkpoint's gFID from the Tune trial; a data-parallel trial reports at its end")


def _check_cross_fields(study: StudySpec, source: str) -> None:
    """What `run` would otherwise find out only after training: every field right on its own, wrong together."""
    from raysweep.tokenizers.latent_config import parse_latent_config

    size = study.dataset.image_size
    for i, t in enumerate(study.tokenizer_trials):
        down = parse_latent_config(t.latent).down
        if size % down:
            raise ConfigError(source, f"tokenizers (trial {i}, '{t.id}').latent",
                              f"downsampling factor {down} does not divide dataset.image_size {size}")
    check_patch_sizes(study, source)
    if study.evaluation.num_samples < study.dataset.num_classes:
        raise ConfigError(source, "evaluation.num_samples",
                          f"must be at least dataset.num_classes ({study.dataset.num_classes}) for class balance")
    _check_metric_params(study, source)
    check_path_lengths(study)


def _check_metric_params(study: StudySpec, source: str) -> None:
    """Each metric's params against its constructor (names and values), as the metric stage will build it."""
    from raysweep.metrics.registry import metric_info

    for name, params in study.metrics.params.items():
        try:
            metric_info(name).build(f"metric '{name}'", **params)
        except (TypeError, ValueError) as err:
            raise ConfigError(source, f"metrics.params.{name}", str(err)) from None


def check_path_lengths(study: StudySpec) -> None:
    """The study's local directories must fit the file system they go on: no path component longer than its
    NAME_MAX, and room under PATH_MAX for what raysweep writes below them (`PATH_HEADROOM` characters)."""
    from raysweep.config.preflight import local_directory, nearest_existing

    for key, location in (("storage.root", str(study.root)), ("storage.tune", study.tune_storage),
                          ("storage.latents", study.latent_storage)):
        directory = local_directory(location)
        if directory is None:
            continue
        anchor = nearest_existing(directory)
        name_max, path_max = (os.pathconf(anchor, "PC_NAME_MAX"), os.pathconf(anchor, "PC_PATH_MAX")) \
            if anchor.is_dir() else (255, 4096)
        long = [part for part in directory.parts if len(part.encode()) > name_max]
        if long:
            raise ConfigError(study.source, key, f"path component '{long[0][:40]}...' is {len(long[0].encode())} "
                              f"bytes; the file system at '{anchor}' allows {name_max}")
        if len(str(directory).encode()) + PATH_HEADROOM > path_max:
            raise ConfigError(study.source, key, f"'{str(directory)[:40]}...' is {len(str(directory).encode())} "
                              f"bytes; the file system at '{anchor}' allows {path_max} for a whole path and raysweep "
                              f"needs {PATH_HEADROOM} below it")


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study YAML file. Raises `ConfigError` with a one-line message."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise ConfigError(source, "", "file not found")
    if not path.is_file():
        raise ConfigError(source, "", "not a regular file (a directory or device); give a study YAML file")
    data = read_yaml(path)
    if data is None:
        raise ConfigError(source, "", "the file is empty; a study needs at least 'name'")
    return parse_study(data, source)
