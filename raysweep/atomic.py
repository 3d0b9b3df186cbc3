"""Atomic file writes: a kill at any moment leaves the old file or the new one, never a torn one.

Write to a temp file in a hidden folder beside the target (same filesystem, so the rename is atomic), fsync it,
rename it over the target, fsync the directory (so the rename itself survives a power loss). The temp name carries
host and pid: a later write of the same target removes the temps of dead writers on this host, so a killed run
leaves no orphans once the file is written again, and never deletes a live writer's temp on another NFS client.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp"


def temp_name(name: str) -> str:
    """This writer's hidden temp name for `name` (Ray Data, pyarrow datasets and our listers skip dot files)."""
    return f".{name}.{socket.gethostname()}.{os.getpid()}{TEMP_MARK}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temps(directory: Path, name: str) -> None:
    """Temps of `name` (a file name or a glob such as `part-*.parquet`) left in `directory` by writers on this host
    that no longer run."""
    host = socket.gethostname()
    for tmp in directory.glob(f".{name}.*{TEMP_MARK}"):
        writer, _, pid = tmp.name.removesuffix(TEMP_MARK).rpartition(".")
        if writer.endswith(f".{host}") and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def temp_beside(path: Path) -> Iterator[Path]:
    """A temp path with `path`'s own name, inside a hidden per-writer directory beside it (removed on exit, with
    whatever is left in it); leftovers of dead writers of `path` on this host are removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path.parent, path.name)
    folder = path.parent / temp_name(path.name)
    folder.mkdir(exist_ok=True)
    try:
        yield folder / path.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def atomic_file(path: Path, durable: bool = True) -> Iterator[Path]:
    """Yield the temp path to write; on normal exit it replaces `path` (fsync-ed when `durable`), on an exception
    it is removed and `path` is untouched. The temp file has the target's own name (`temp_beside`): writers that
    record their file name in the file (torch.save names its zip records after it) write the same bytes as to
    `path` itself, so checkpoint hashes stay reproducible."""
    path = Path(path)
    with temp_beside(path) as tmp:
        yield tmp
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
    if durable:
        fsync_path(path.parent, directory=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write-then-rename (fsync-ed) so a crash never leaves a half-written marker that looks finished."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))
