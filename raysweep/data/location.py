"""Where latents live: a local (or NFS) directory or a `pyarrow.fs` URI (s3://, gs://, file://, ...).

Both resolve to a pyarrow `FileSystem` and a path on it, so writers, readers and Ray Data take one code path on a
laptop and on a cluster with object storage. URI locations stay strings (`Path` would fold `s3://` to `s3:/`);
local ones stay `Path`s. A URI's query (`?endpoint_override=...`) is kept when paths are joined onto it.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Union

import pyarrow.fs as pafs

Location = Union[str, "os.PathLike[str]"]  # a local path or a pyarrow.fs URI

# Schemes `pyarrow.fs.FileSystem.from_uri` understands and a study may name for its latents and Tune state.
FS_SCHEMES: tuple[str, ...] = ("file", "s3", "gs", "hdfs", "abfs", "abfss")


def is_uri(location: Location) -> bool:
    return "://" in str(location)


def uri_scheme(location: Location) -> str:
    """`s3` for `s3://b/x`; empty for a local path."""
    text = str(location)
    return text.split("://", 1)[0] if is_uri(text) else ""


def check_location(location: str) -> str:
    """A local path, or a URI with a scheme of `FS_SCHEMES`; ValueError with the allowed schemes otherwise."""
    if is_uri(location) and uri_scheme(location) not in FS_SCHEMES:
        raise ValueError(f"unsupported scheme '{uri_scheme(location)}://' in '{location}'; allowed: a directory or "
                         f"{', '.join(s + '://' for s in FS_SCHEMES)}")
    return location


def resolve(location: Location) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path on it (`FileSystem.from_uri` for URIs, the local filesystem otherwise)."""
    if is_uri(location):
        check_location(str(location))
        return pafs.FileSystem.from_uri(str(location))
    return pafs.LocalFileSystem(), str(Path(location).absolute())


def join(location: Location, *parts: str) -> str | Path:
    """`location/part/...`, of the same kind as `location` (a URI string or a `Path`)."""
    if not is_uri(location):
        return Path(location, *parts)
    base, sep, query = str(location).partition("?")
    return "/".join([base.rstrip("/"), *parts]) + sep + query


def file_names(fs: pafs.FileSystem, path: str, pattern: str) -> list[str]:
    """Sorted names of the files directly in the directory `path` of `fs` that match the glob `pattern` (none if
    it is missing). Names starting with '.' (temporary parts of a write in progress) never match."""
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.File
                  and not i.base_name.startswith(".") and fnmatch.fnmatchcase(i.base_name, pattern))


def list_files(location: Location, pattern: str) -> list[str | Path]:
    """`file_names` of the directory `location`, as locations of its kind."""
    fs, path = resolve(location)
    return [join(location, name) for name in file_names(fs, path, pattern)]


def is_dir(location: Location) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory
