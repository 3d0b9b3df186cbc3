"""Where local weight files are looked for, and their content hash (recorded with every score)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

WEIGHTS_DIR_ENV = "RAYSWEEP_WEIGHTS_DIR"


def weights_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_search_dirs() -> list[Path]:
    """$RAYSWEEP_WEIGHTS_DIR (if set), then torch.hub's checkpoint cache, where a machine that once downloaded
    torch-fidelity's or torchvision's weights keeps them. Nothing is ever downloaded."""
    import torch  # here, not at import: the config layer validates feature-network names through this module

    dirs = [Path(os.environ[WEIGHTS_DIR_ENV])] if os.environ.get(WEIGHTS_DIR_ENV) else []
    return [*dirs, Path(torch.hub.get_dir()) / "checkpoints"]


def find_weights(label: str, filenames: tuple[str, ...], explicit: str | Path | None, hint: str) -> Path:
    """The explicit path if given, else the first of `filenames` in `weights_search_dirs()`.

    FileNotFoundError names every path tried and how to provide the file; `label` names the network."""
    if explicit is not None:
        tried = [Path(explicit).expanduser()]
    else:
        tried = [d / name for d in weights_search_dirs() for name in filenames]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"feature network '{label}': local weights not found; looked for: {', '.join(map(str, tried))}. "
        f"Provide the file with `reference.weights_path` in the study YAML or put it in ${WEIGHTS_DIR_ENV} "
        f"(raysweep never downloads weights). {hint}")
