"""Checks of a study against the machine it is about to run on, before anything is written or tracked.

`load_study` only validates the file (it must also work on a laptop for a cluster study); `preflight` is what
`raysweep run` does first (and `raysweep validate --preflight`, which adds `check_data`): every path the study
reads must exist, every directory it writes must be writable, and GPUs must exist where a local Ray is asked for
them. Failures are `ConfigError` one-liners (exit code 2).
"""
from __future__ import annotations

import os
from pathlib import Path

from raysweep.config.errors import ConfigError
from raysweep.config.spec import StudySpec
from raysweep.data.location import is_uri, resolve, uri_scheme


def nearest_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (what a new directory there would be created in)."""
    probe = path
    while probe != probe.parent:
        try:
            if probe.exists():
                break
        except OSError:  # a name too long for the file system, say: it does not exist either
            pass
        probe = probe.parent
    return probe


def _writable(path: Path) -> str | None:
    """Why `path` cannot be created or written (None if it can): checks its nearest existing ancestor."""
    probe = nearest_existing(path)
    if not probe.is_dir():
        return f"'{probe}' is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"'{probe}' is not writable"
    return None


def local_directory(location: str) -> Path | None:
    """The local directory of a path or `file://` URI; None for object stores (checked only when written)."""
    if not is_uri(location):
        return Path(location)
    if uri_scheme(location) == "file":
        return Path(resolve(location)[1])
    return None


def _must_exist(source: str, key: str, path: str | None, kind: str = "file or directory") -> None:
    if path is not None and not Path(path).exists():
        raise ConfigError(source, key, f"{kind} '{path}' does not exist")


def preflight(study: StudySpec) -> None:
    """Raise `ConfigError` for the first thing that would make `run_study` fail part-way."""
    source = study.source
    why = _writable(study.root)
    if why:
        raise ConfigError(source, "storage.root", f"cannot write the study directory '{study.root}': {why}")
    for key, location in (("storage.tune", study.storage.tune), ("storage.latents", study.latent_storage)):
        directory = None if location is None else local_directory(location)
        why = None if directory is None else _writable(directory)
        if why:
            raise ConfigError(source, key, f"cannot write '{location}': {why}")
    _must_exist(source, "reference.weights_path", study.reference.weights_path, "weights file")
    for i, scorer in enumerate(study.evaluation.scorers):  # read at stage 0's scorer check
        _must_exist(source, f"evaluation.scorers[{i}] ('{scorer.name}').weights_path", scorer.weights_path,
                    "weights file")
    for i, trial in enumerate(study.tokenizer_trials):  # read when that tokenizer starts training, maybe hours in
        if trial.perceptual_weight > 0:
            _must_exist(source, f"tokenizers (trial {i}, '{trial.id}').lpips_weights", trial.lpips_weights,
                        "LPIPS weights file")
    data = study.dataset
    if data.name == "imagefolder":
        for split in (data.train_split, data.val_split):
            _must_exist(source, "dataset.root", str(Path(data.root or "") / split), "image split directory")
            if data.mask_root is not None:
                _must_exist(source, "dataset.mask_root", str(Path(data.mask_root) / split), "mask split directory")
    res = study.resources
    wants_gpu = [n for n in ("tokenizer", "diffusion", "metric_actor") if getattr(res, n).gpu > 0]
    if wants_gpu and study.ray.address is None:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(source, f"resources.{wants_gpu[0]}.gpu",
                              "asks for a GPU but this machine has none and ray.address is not set "
                              "(a local Ray would wait forever); use gpu: 0 or run on a cluster")


def check_data(study: StudySpec) -> None:
    """Read the study's images as `raysweep run` will (writing nothing): an unreadable image, an empty class
    folder or a mask of the wrong size is a `ConfigError` now rather than after the study started."""
    from raysweep.data.splits import build_splits  # imports the data stack: only when asked

    try:
        build_splits(study.dataset)
    except (ValueError, OSError) as err:
        raise ConfigError(study.source, "dataset", str(err)) from None
