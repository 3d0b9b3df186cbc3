"""`raysweep latents import SRC DEST`: another tool's latents (.npy, .npz, safetensors, torch) into the Parquet
contract of `raysweep.data.latents`, so `raysweep metrics` and the study stages read them.

Arrays are found by name (case-insensitive, `ROLES`); a file holding a single array is the latents. Latents must
be channels-first [N,C,H,W]; labels [N] class indices; masks [N,H,W] 0/1 at latent resolution. Anything that
cannot be told apart is an error listing the keys found, never a guess.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raysweep.data.latents import LABEL, LatentDataError, check_labels, latent_files, write_latents

# role -> the array names that fill it, in no order of preference: two present at once is ambiguous
ROLES: dict[str, tuple[str, ...]] = {
    "latents": ("latents", "latent", "z", "x"),
    "labels": ("labels", "label", "y", "targets", "class_labels"),
    "masks": ("fg_masks", "fg_mask", "masks", "mask"),
    "sample_ids": ("sample_ids", "sample_id", "ids"),
}
UNNAMED = ""  # the key of the one array of a .npy file or of a bare saved tensor


def _load_npy(path: Path) -> dict[str, np.ndarray]:
    return {UNNAMED: np.load(path, allow_pickle=False)}


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _numpy(tensor: object) -> np.ndarray:
    """A torch tensor as numpy; bfloat16/float16 become float32 (numpy has no bfloat16)."""
    import torch

    assert isinstance(tensor, torch.Tensor)
    if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.torch import load_file  # through torch: safetensors' numpy loader refuses bfloat16
    except ImportError:
        raise LatentDataError(f"{path}: reading .safetensors needs the safetensors package "
                              "(pip install 'raysweep[import]')") from None

    return {name: _numpy(tensor) for name, tensor in load_file(path).items()}


def _load_torch(path: Path) -> dict[str, np.ndarray]:
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: no code runs from the file
    if isinstance(obj, torch.Tensor):
        return {UNNAMED: _numpy(obj)}
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(name): _numpy(tensor) for name, tensor in obj.items()}
    raise LatentDataError(f"{path}: holds a {type(obj).__name__}; save a tensor or a dict of tensors "
                          "(e.g. torch.save({'latents': z, 'labels': y}, path))")


LOADERS: dict[str, Callable[[Path], dict[str, np.ndarray]]] = {
    ".npy": _load_npy, ".npz": _load_npz, ".safetensors": _load_safetensors, ".pt": _load_torch, ".pth": _load_torch,
}


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a supported file by name (a single unnamed one for .npy and bare tensors)."""
    if path.suffix.lower() not in LOADERS:
        raise LatentDataError(f"{path}: unsupported file type '{path.suffix}'; allowed: {', '.join(LOADERS)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        arrays = LOADERS[path.suffix.lower()](path)
    except LatentDataError:
        raise
    except Exception as err:  # each library raises its own types for a damaged file; all mean the same here
        first = (str(err).strip().splitlines() or [""])[0][:200]  # torch's run to paragraphs; one line here
        raise LatentDataError(f"{path}: not a readable {path.suffix} file ({type(err).__name__}: {first})") from None
    if not arrays:
        raise LatentDataError(f"{path}: holds no arrays")
    return arrays


def describe(arrays: dict[str, np.ndarray]) -> str:
    """`latents [8, 4, 2, 2] float32, y [8] int64`: what an error lists as the keys found."""
    return ", ".join(f"{name or '(unnamed)'} {list(a.shape)} {a.dtype}" for name, a in arrays.items())


def pick(arrays: dict[str, np.ndarray], role: str, source: Path) -> np.ndarray | None:
    """The array that fills `role` by name; a file holding only one array fills it whatever its name."""
    names = [name for name in arrays if name.lower() in ROLES[role]]
    if len(names) > 1:
        raise LatentDataError(f"{source}: ambiguous {role}: keys {names} all match; found keys {describe(arrays)}; "
                              f"keep one of them")
    if names:
        return arrays[names[0]]
    return next(iter(arrays.values())) if len(arrays) == 1 else None


@dataclass(frozen=True)
class Imported:
    """What `import_latents` wrote: the Parquet files, the rows, the per-image shape, and unused keys."""

    files: list[Path]
    rows: int
    shape: tuple[int, int, int]
    ignored: list[str]


def _extra(path: Path | None, role: str, given: np.ndarray | None, src: Path) -> np.ndarray | None:
    """`--labels`/`--masks FILE`: the array of that role in FILE; also giving it in SRC is ambiguous."""
    if path is None:
        return given
    if given is not None:
        raise LatentDataError(f"{src}: {role} are in the file and also given as --{role} {path}; drop one")
    arrays = load_arrays(path)
    found = pick(arrays, role, path)
    if found is None:
        raise LatentDataError(f"{path}: no {role}: found keys {describe(arrays)}; name them one of {ROLES[role]}")
    return found


def import_latents(src: Path, dest: Path, labels: Path | None = None, masks: Path | None = None,
                   tokenizer_id: str | None = None, rows_per_file: int = 4096) -> Imported:
    """Read `src` (and the optional `labels`/`masks` files), check the arrays, and write the contract to `dest`
    (a new or empty directory: importing never replaces latents already there)."""
    arrays = load_arrays(src)
    latents = pick(arrays, "latents", src)
    if latents is None:
        latents = _only_4d(arrays, src)
    by_role = {role: pick(arrays, role, src) if len(arrays) > 1 else None for role in ("labels", "masks", "sample_ids")}
    label_values = _extra(labels, "labels", by_role["labels"], src)
    mask_values = _extra(masks, "masks", by_role["masks"], src)
    if label_values is None:
        raise LatentDataError(f"{src}: no labels: found keys {describe(arrays)}; name them one of {ROLES['labels']} "
                              "or pass --labels FILE")
    if latents.ndim != 4 or not (np.issubdtype(latents.dtype, np.floating) or np.issubdtype(latents.dtype,
                                                                                          np.integer)):
        raise LatentDataError(f"{src}: latents must be numbers of shape [N,C,H,W] (channels first), got "
                              f"{latents.dtype} {list(latents.shape)}; reshape or transpose them first")
    if np.shape(label_values) != (len(latents),):
        raise LatentDataError(f"{labels or src}: column '{LABEL}': labels of shape {list(np.shape(label_values))} "
                              f"for {len(latents)} latents; give one class index per latent")
    check_labels(label_values, str(labels or src))
    if dest.is_dir() and any(dest.glob("part-*.parquet")):
        raise LatentDataError(f"{dest}: already holds latents ({len(latent_files(dest))} part file(s)); "
                              "choose a new or empty directory")
    used = {id(a) for a in (latents, label_values, mask_values, by_role["sample_ids"]) if a is not None}
    files = write_latents(dest, latents, label_values, sample_ids=by_role["sample_ids"],
                          fg_masks=mask_values,
                          tokenizer_id=tokenizer_id or src.stem, extra_metadata={"imported_from": src.name},
                          rows_per_file=rows_per_file)
    ignored = [name or "(unnamed)" for name, a in arrays.items() if id(a) not in used]
    c, h, w = latents.shape[1:]
    return Imported([Path(f) for f in files], len(latents), (c, h, w), ignored)


def import_help() -> str:
    """The `raysweep latents import --help` epilog: formats, shapes and the array names recognised."""
    names = "\n".join(f"  {role:<10} {', '.join(names)}" for role, names in ROLES.items())
    return (f"SRC: {', '.join(LOADERS)} (.npy holds the latents alone; torch: a tensor or a dict of tensors)\n"
            "shapes: latents [N,C,H,W] channels first, labels [N] class indices 0..K-1, masks [N,H,W] 0/1 at "
            "latent resolution\n\narray names recognised (case-insensitive; two names of one role in a file is an "
            f"error listing the keys found):\n{names}\n"
            "A file of one array fills the role asked (latents for SRC, labels for --labels, masks for --masks);\n"
            "with no latents name, SRC's only 4-D array is the latents. Unrecognised keys are reported, not "
            "written.\nThe result: see `raysweep metrics --help` for the file contract.")


def _only_4d(arrays: dict[str, np.ndarray], src: Path) -> np.ndarray:
    """No array is named like latents: the one 4-D array is, if there is exactly one."""
    four = [name for name, a in arrays.items() if a.ndim == 4]
    if len(four) != 1:
        raise LatentDataError(f"{src}: cannot tell which array holds the latents; found keys {describe(arrays)}; "
                              f"name it one of {ROLES['latents']}")
    return arrays[four[0]]
