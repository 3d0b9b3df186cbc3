"""The latent Parquet contract: the interface between tokenizers, metrics and diffusion (and other people's tools).

One row per image: `sample_id: int64`, `label: int32`, `latent: fixed_size_list<float32>[C*H*W]` (C-order of
[C,H,W], un-normalised), optional `fg_mask: fixed_size_list<uint8>[H*W]` (foreground at latent resolution).
Schema metadata: `raysweep.latent_shape` (JSON [C,H,W]), `raysweep.tokenizer_id`, `raysweep.channel_mean` /
`raysweep.channel_std` (JSON lists, per channel over N,H,W of the whole written set: what standardisation uses),
`raysweep.norm_hash` (short sha256 of those stats, so stale or edited statistics are detected), plus free-form
string metadata. raysweep's stages require every key; `raysweep metrics` also reads another tool's files, whose
footer has none of the statistics keys (see `CONTRACT_HELP`, shown by `raysweep metrics --help`).
Files are `part-00000.parquet`, ...; plain pyarrow / pandas / polars / duckdb read them.
A latent directory is a local path or a `pyarrow.fs` URI (s3://, gs://, file://): see `raysweep.data.location`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raysweep.atomic import atomic_file, remove_dead_temps, temp_name
from raysweep.data.location import Location, file_names, join, resolve

SAMPLE_ID, LABEL, LATENT, FG_MASK = "sample_id", "label", "latent", "fg_mask"
LATENT_COLUMNS: tuple[str, ...] = (SAMPLE_ID, LABEL, LATENT, FG_MASK)
REQUIRED_COLUMNS: tuple[str, ...] = (SAMPLE_ID, LABEL, LATENT)
SHAPE_KEY, TOKENIZER_KEY = "raysweep.latent_shape", "raysweep.tokenizer_id"
MEAN_KEY, STD_KEY, HASH_KEY = "raysweep.channel_mean", "raysweep.channel_std", "raysweep.norm_hash"
RESERVED_KEYS: tuple[str, ...] = (SHAPE_KEY, TOKENIZER_KEY, MEAN_KEY, STD_KEY, HASH_KEY)
PART_GLOB = "part-*.parquet"

CONTRACT_HELP = f"""\
latent file contract: Parquet files (a file, or a directory of *.parquet; a local path or s3://, gs://, file://)
  one row per image, columns:
    {SAMPLE_ID:<9} int64                             unique id
    {LABEL:<9} int32 (any integer type)          class index 0..K-1
    {LATENT:<9} fixed_size_list<float32>[C*H*W]   C-order of [C,H,W], un-normalised, finite
    {FG_MASK:<9} fixed_size_list<uint8>[H*W]       optional: foreground 0/1 at latent resolution
  footer (schema metadata) keys:
    {SHAPE_KEY:<22} JSON [C,H,W]; required, or pass --shape C,H,W
    {MEAN_KEY:<22} JSON list of C floats: per-channel mean over N,H,W of the whole set
    {STD_KEY:<22} JSON list of C floats: per-channel population std, likewise
    {HASH_KEY:<22} 16 hex chars of sha256 over those statistics (stale or edited stats are refused)
    {TOKENIZER_KEY:<22} who wrote the latents
  without the three statistics keys (another tool's file) `raysweep metrics` computes them in a first pass over
  the files and says so on stderr; a partial set of them is refused. raysweep's own writer sets all of them.
  `raysweep latents import` writes this contract from .npy, .npz, .safetensors and torch (.pt/.pth) files."""


class LatentDataError(ValueError):
    """Bad latent data; the one-line message names the file (or batch) and the column or metadata key."""


@dataclass
class LatentMeta:
    """What the Parquet footer says about a latent set; stats are float64 [C]."""

    shape: tuple[int, int, int]
    tokenizer_id: str
    channel_mean: np.ndarray
    channel_std: np.ndarray
    norm_hash: str
    extra: dict[str, str] = field(default_factory=dict)

    def standardise(self, latent: np.ndarray) -> np.ndarray:
        """[..., C, H, W] -> per-channel standardised float32 (a constant channel is only centred)."""
        mean, std = self._stats()
        return ((latent - mean) / std).astype(np.float32)

    def unstandardise(self, latent: np.ndarray) -> np.ndarray:
        """Inverse of `standardise`: [..., C, H, W] back to the tokenizer's scale, float32."""
        mean, std = self._stats()
        return (latent * std + mean).astype(np.float32)

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        std = np.where(self.channel_std > 0, self.channel_std, 1.0)
        return self.channel_mean[:, None, None], std[:, None, None]  # (C, 1, 1)


@dataclass
class LatentBatch:
    """sample_id [B] int64, label [B] int32, latent [B,C,H,W] float32 (un-normalised), fg_mask [B,H,W] uint8 | None."""

    sample_id: np.ndarray
    label: np.ndarray
    latent: np.ndarray
    fg_mask: np.ndarray | None

    def __len__(self) -> int:
        return len(self.label)


def compute_norm_hash(mean: np.ndarray, std: np.ndarray) -> str:
    """16 hex chars of sha256 over the JSON of the stats (JSON floats round-trip exactly, so re-hashing is stable)."""
    payload = json.dumps([np.asarray(mean, np.float64).tolist(), np.asarray(std, np.float64).tolist()])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def check_norm_hash(meta: LatentMeta, source: str = "latents") -> None:
    """Raise if the stored normalisation statistics do not match their hash (stale or edited file)."""
    if compute_norm_hash(meta.channel_mean, meta.channel_std) != meta.norm_hash:
        raise LatentDataError(f"{source}: metadata '{HASH_KEY}' does not match '{MEAN_KEY}'/'{STD_KEY}' "
                              "(stale or edited normalisation); re-encode the latents")


def latent_schema(shape: tuple[int, int, int], with_mask: bool, metadata: dict[str, str]) -> pa.Schema:
    """The Arrow schema of a latent file of per-image `shape` [C,H,W], with `metadata` in the schema footer."""
    c, h, w = shape
    fields = [pa.field(SAMPLE_ID, pa.int64(), nullable=False), pa.field(LABEL, pa.int32(), nullable=False),
              pa.field(LATENT, pa.list_(pa.float32(), c * h * w), nullable=False)]
    if with_mask:
        fields.append(pa.field(FG_MASK, pa.list_(pa.uint8(), h * w), nullable=False))
    return pa.schema(fields, metadata={k.encode(): v.encode() for k, v in metadata.items()})


def _channel_stats(latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float64 mean and (population) std over N,H,W; one channel at a time to bound memory."""
    channels = [latents[:, ch].astype(np.float64) for ch in range(latents.shape[1])]
    return np.array([x.mean() for x in channels]), np.array([x.std() for x in channels])


def _check_write_inputs(directory: Location, latents: np.ndarray, labels: np.ndarray, sample_ids: np.ndarray,
                        fg_masks: np.ndarray | None, tokenizer_id: str, extra: dict[str, str]) -> None:
    if latents.ndim != 4 or len(latents) == 0:
        raise LatentDataError(f"{directory}: column '{LATENT}': expected a non-empty [N,C,H,W], got {latents.shape}")
    if not np.isfinite(latents).all():
        raise LatentDataError(f"{directory}: column '{LATENT}': contains NaN or inf")
    n, _, h, w = latents.shape
    for name, values in ((LABEL, labels), (SAMPLE_ID, sample_ids)):
        if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer):
            raise LatentDataError(f"{directory}: column '{name}': expected integers of shape ({n},), got "
                                  f"{values.dtype} {values.shape}")
    if len(np.unique(sample_ids)) != n:
        raise LatentDataError(f"{directory}: column '{SAMPLE_ID}': ids are not unique")
    if fg_masks is not None and fg_masks.shape != (n, h, w):
        raise LatentDataError(f"{directory}: column '{FG_MASK}': expected shape {(n, h, w)}, got {fg_masks.shape}")
    if fg_masks is not None and not np.isin(fg_masks, (0, 1)).all():
        raise LatentDataError(f"{directory}: column '{FG_MASK}': values must be 0 or 1")
    if not tokenizer_id:
        raise LatentDataError(f"{directory}: metadata '{TOKENIZER_KEY}': must be a non-empty string")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise LatentDataError(f"{directory}: extra metadata must map str -> str, got {extra!r}")
    if clash := sorted(set(extra) & set(RESERVED_KEYS)):
        raise LatentDataError(f"{directory}: extra metadata may not set the reserved keys {clash}")


def write_latents(directory: Location, latents: np.ndarray, labels: np.ndarray, *,
                  sample_ids: np.ndarray | None = None, fg_masks: np.ndarray | None = None, tokenizer_id: str,
                  extra_metadata: dict[str, str] | None = None, rows_per_file: int = 4096) -> list[str | Path]:
    """Write latents [N,C,H,W] with labels [N], sample ids [N] (default 0..N-1) and optional fg masks [N,H,W]
    as `part-00000.parquet`, ... (each atomically: temp name, then rename); older parts beyond the new count are
    removed so the directory holds exactly this set. Returns the files in order (`Path`s, or URIs for a URI)."""
    latents = np.ascontiguousarray(latents, dtype=np.float32)
    labels = np.asarray(labels)
    ids = np.arange(len(latents), dtype=np.int64) if sample_ids is None else np.asarray(sample_ids)
    extra = dict(extra_metadata or {})
    _check_write_inputs(directory, latents, labels, ids, fg_masks, tokenizer_id, extra)
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
    n, c, h, w = latents.shape
    mean, std = _channel_stats(latents)
    metadata = {**extra, SHAPE_KEY: json.dumps([c, h, w]), TOKENIZER_KEY: tokenizer_id,
                MEAN_KEY: json.dumps(mean.tolist()), STD_KEY: json.dumps(std.tolist()),
                HASH_KEY: compute_norm_hash(mean, std)}
    schema = latent_schema((c, h, w), fg_masks is not None, metadata)
    fs, root = resolve(directory)
    fs.create_dir(root, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):  # parts a killed writer left half-written, whatever their number
        remove_dead_temps(Path(root), PART_GLOB)
    names: list[str] = []
    for part, start in enumerate(range(0, n, rows_per_file)):
        sl = slice(start, min(n, start + rows_per_file))
        columns = [pa.array(ids[sl].astype(np.int64)), pa.array(labels[sl].astype(np.int32)),
                   pa.FixedSizeListArray.from_arrays(latents[sl].reshape(-1), c * h * w)]
        if fg_masks is not None:
            columns.append(pa.FixedSizeListArray.from_arrays(fg_masks[sl].astype(np.uint8).reshape(-1), h * w))
        name = f"part-{part:05d}.parquet"
        _write_part(pa.Table.from_arrays(columns, schema=schema), fs, root, name)
        names.append(name)
    for stale in set(file_names(fs, root, PART_GLOB)) - set(names):
        fs.delete_file(f"{root}/{stale}")
    return [join(directory, name) for name in names]


OBJECT_STORES = ("s3", "gcs")  # pyarrow.fs type names: no rename, but an object appears only once fully uploaded


def _write_part(table: pa.Table, fs: pafs.FileSystem, root: str, name: str) -> None:
    """One part, all or nothing. Local (and file://): temp + fsync + rename (`raysweep.atomic`). Object stores have
    no rename (pyarrow's move is copy + delete), but a PUT or multipart upload becomes visible only when it
    completes, so the part is written under its final name; a killed upload leaves no object (only an incomplete
    multipart upload, which the bucket's abort-incomplete-uploads lifecycle rule removes). Other filesystems
    (HDFS...): hidden temp + `fs.move`, a rename there."""
    if isinstance(fs, pafs.LocalFileSystem):
        with atomic_file(Path(root) / name) as tmp:
            pq.write_table(table, str(tmp))
    elif fs.type_name in OBJECT_STORES:
        pq.write_table(table, f"{root}/{name}", filesystem=fs)
    else:
        hidden = f"{root}/{temp_name(name)}"  # Ray Data and pyarrow datasets skip it
        pq.write_table(table, hidden, filesystem=fs)
        fs.move(hidden, f"{root}/{name}")


def latent_parts(directory: Location) -> tuple[pafs.FileSystem, str, list[str]]:
    """The filesystem, the directory's path on it and the sorted `part-*.parquet` names (at least one)."""
    fs, root = resolve(directory)
    names = file_names(fs, root, PART_GLOB)
    if not names:
        raise LatentDataError(f"{directory}: no '{PART_GLOB}' latent files")
    return fs, root, names


def latent_files(directory: Location) -> list[str | Path]:
    """The sorted `part-*.parquet` files of a latent directory (at least one), of the directory's kind."""
    return [join(directory, name) for name in latent_parts(directory)[2]]


def _json_key(raw: dict[str, str], key: str, source: str) -> object:
    try:
        return json.loads(raw[key])
    except (KeyError, json.JSONDecodeError):
        hint = " (a plain Parquet file: give its per-image shape, `raysweep metrics --shape C,H,W`)" \
            if key == SHAPE_KEY else ""
        raise LatentDataError(f"{source}: metadata '{key}' is missing or not valid JSON{hint}") from None


@dataclass(frozen=True)
class Footer:
    """One file's Parquet footer as raysweep reads it. `stats` (channel mean, std, norm hash) is None when none of
    the statistics keys is there (another tool's file): `raysweep metrics` then computes them in a first pass."""

    shape: tuple[int, int, int]
    tokenizer_id: str
    stats: tuple[np.ndarray, np.ndarray, str] | None
    extra: dict[str, str]
    has_mask: bool  # the optional `fg_mask` column is there

    def meta(self, source: str) -> LatentMeta:
        """The footer as `LatentMeta`; raises naming the missing key when the statistics are absent, or the
        channel whose statistic is NaN, inf or a negative std."""
        if self.stats is None:
            raise LatentDataError(f"{source}: metadata '{MEAN_KEY}' is missing or not valid JSON")
        mean, std, norm_hash = self.stats
        _check_statistic(mean, MEAN_KEY, source)
        _check_statistic(std, STD_KEY, source)
        return LatentMeta(shape=self.shape, tokenizer_id=self.tokenizer_id, channel_mean=mean, channel_std=std,
                          norm_hash=norm_hash, extra=self.extra)


def _shape_from(raw: dict[str, str], source: str, given: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """The footer's [C,H,W]; `given` stands in for a missing key and must match a present one."""
    if given is not None and SHAPE_KEY not in raw:
        return given
    shape = _json_key(raw, SHAPE_KEY, source)
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in shape)):
        raise LatentDataError(f"{source}: metadata '{SHAPE_KEY}' must be a JSON [C, H, W] of positive ints, "
                              f"got {raw[SHAPE_KEY]!r}")
    if given is not None and tuple(shape) != tuple(given):
        raise LatentDataError(f"{source}: metadata '{SHAPE_KEY}' is {shape}, not the given shape {list(given)}")
    return shape[0], shape[1], shape[2]


def _check_statistic(values: np.ndarray, key: str, source: str) -> None:
    """Footer statistics standardise every latent: NaN or inf (JSON `NaN`, `Infinity`, which Python reads) would
    make every metric NaN, a negative std would flip channels; refused naming the channel."""
    bad = np.flatnonzero(~np.isfinite(values) | ((values < 0) if key == STD_KEY else False))
    if len(bad):
        allowed = "finite numbers >= 0" if key == STD_KEY else "finite numbers"
        raise LatentDataError(f"{source}: metadata '{key}': channel {bad[0]} is {values[bad[0]]}; allowed: "
                              f"{allowed} (re-encode the latents, or drop the three statistics keys to have them "
                              "computed)")


def _footer(schema: pa.Schema, source: str, shape: tuple[int, int, int] | None = None,
            strict: bool = True) -> Footer:
    """Parse the footer. `strict` (raysweep's own stages) requires every key; otherwise the statistics and the
    tokenizer id may all be absent, but a partial set is refused (an edited footer, not another tool's file)."""
    raw = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    c, h, w = _shape_from(raw, source, shape)
    extra, has_mask = {k: v for k, v in raw.items() if k not in RESERVED_KEYS}, FG_MASK in schema.names
    if not strict and not any(k in raw for k in (MEAN_KEY, STD_KEY, HASH_KEY)):
        return Footer((c, h, w), raw.get(TOKENIZER_KEY, ""), None, extra, has_mask)
    stats = []
    for key in (MEAN_KEY, STD_KEY):
        values = _json_key(raw, key, source)
        if not (isinstance(values, list) and len(values) == c and all(isinstance(x, (int, float))
                                                                       and not isinstance(x, bool) for x in values)):
            raise LatentDataError(f"{source}: metadata '{key}' must be a JSON list of {c} numbers")
        stats.append(np.asarray(values, np.float64))
    for key in (TOKENIZER_KEY, HASH_KEY):
        if not raw.get(key):
            raise LatentDataError(f"{source}: metadata '{key}' is missing")
    return Footer((c, h, w), raw[TOKENIZER_KEY], (stats[0], stats[1], raw[HASH_KEY]), extra, has_mask)


def _open(path: Location) -> pq.ParquetFile:
    try:
        fs, on_fs = resolve(path)
        return pq.ParquetFile(on_fs, filesystem=fs)
    except (OSError, pa.ArrowException) as err:
        raise LatentDataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from None


def read_latent_meta(path: Location) -> LatentMeta:
    """Metadata from the Parquet footer only (cheap: no column data is read)."""
    return _footer(_open(path).schema_arrow, str(path)).meta(str(path))


def _rows(values: np.ndarray, width: int, name: str, source: str) -> np.ndarray:
    """[B, width] from a 2-D array or (as Ray Data hands over fixed-size lists) an object array of 1-D arrays."""
    if values.dtype == object:
        values = np.stack(list(values)) if len(values) else np.empty((0, width))
    if values.size != len(values) * width:
        raise LatentDataError(f"{source}: column '{name}': rows hold {values.size // max(len(values), 1)} values, "
                              f"expected {width}")
    return values.reshape(len(values), width)


def check_labels(labels: np.ndarray, source: str) -> None:
    """Labels are class indices 0..K-1 stored as int32: a float label, a negative sentinel (-1 = "unlabelled")
    or a value past int32 would silently become a wrong class (int32 casting wraps), so each is refused."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise LatentDataError(f"{source}: column '{LABEL}': expected integers, got {labels.dtype}; store class "
                              "indices 0..K-1 as int32")
    if len(labels) and (labels.min() < 0 or labels.max() > np.iinfo(np.int32).max):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise LatentDataError(f"{source}: column '{LABEL}': label {bad} is out of range; labels are class indices "
                              f"0..K-1 (at most {np.iinfo(np.int32).max}): map them to 0..K-1")


def latent_batch_from_columns(columns: dict[str, np.ndarray], shape: tuple[int, int, int],
                              source: str = "batch", first_row: int = 0) -> LatentBatch:
    """Numpy columns (a Ray Data `batch_format="numpy"` batch, or pyarrow's) -> validated `LatentBatch`;
    `first_row` is the batch's first row in its file, for messages."""
    c, h, w = shape
    for name in REQUIRED_COLUMNS:
        if name not in columns:
            raise LatentDataError(f"{source}: column '{name}' is missing (have {sorted(columns)})")
    latent = _rows(np.asarray(columns[LATENT]), c * h * w, LATENT, source).astype(np.float32, copy=False)
    mask = None
    if columns.get(FG_MASK) is not None:
        mask = _rows(np.asarray(columns[FG_MASK]), h * w, FG_MASK, source).astype(np.uint8, copy=False)
        mask = mask.reshape(-1, h, w)
    ids, labels = np.asarray(columns[SAMPLE_ID]), np.asarray(columns[LABEL])
    if not np.issubdtype(ids.dtype, np.integer):
        raise LatentDataError(f"{source}: column '{SAMPLE_ID}': expected integers, got {ids.dtype}")
    check_labels(labels, source)
    batch = LatentBatch(sample_id=ids.astype(np.int64, copy=False), label=labels.astype(np.int32, copy=False),
                        latent=latent.reshape(-1, c, h, w), fg_mask=mask)
    for name, values in ((SAMPLE_ID, batch.sample_id), (LABEL, batch.label), (FG_MASK, batch.fg_mask)):
        if values is not None and len(values) != len(latent):
            raise LatentDataError(f"{source}: column '{name}' has {len(values)} rows, '{LATENT}' has {len(latent)}")
    if not np.isfinite(latent).all():
        rows = np.flatnonzero(~np.isfinite(latent).all(axis=1))
        raise LatentDataError(f"{source}: column '{LATENT}': {len(rows)} row(s) contain NaN or inf (first: row "
                              f"{first_row + rows[0]}, sample_id {batch.sample_id[rows[0]]}); latents must be finite")
    if mask is not None and mask.size and mask.max() > 1:
        raise LatentDataError(f"{source}: column '{FG_MASK}': values must be 0 or 1, got {mask.max()}")
    return batch


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_floating(kind) or pa.types.is_integer(kind)


def _check_column_types(schema: pa.Schema, shape: tuple[int, int, int], path: Location) -> None:
    """Types from the footer, before any data is read: lists of the right width, and numbers (a string or
    boolean value would fail deep inside numpy instead, or be read as 0/1)."""
    c, h, w = shape
    for name, width in ((LATENT, c * h * w), (FG_MASK, h * w)):
        if name in schema.names:
            kind = schema.field(name).type
            if not pa.types.is_fixed_size_list(kind) or kind.list_size != width:
                raise LatentDataError(f"{path}: column '{name}': type {kind} is not a fixed_size_list of {width} "
                                      f"values (latent shape {[c, h, w]})")
            if not _numeric(kind.value_type):
                expected = "float32" if name == LATENT else "uint8 0/1"
                raise LatentDataError(f"{path}: column '{name}': values are {kind.value_type}, not numbers; "
                                      f"allowed: {expected} (any float or integer type is read)")
    for name in (SAMPLE_ID, LABEL):
        if name in schema.names and not pa.types.is_integer(schema.field(name).type):
            raise LatentDataError(f"{path}: column '{name}': expected integers, got {schema.field(name).type}; "
                                  f"store {'class indices 0..K-1 as int32' if name == LABEL else 'unique int64 ids'}")


def open_latent_file(path: Location, shape: tuple[int, int, int] | None = None,
                     strict: bool = True) -> tuple[pq.ParquetFile, Footer]:
    """The open file and its footer (see `Footer`; `shape` stands in for a missing shape key), column types
    checked against the shape. Reads no column data."""
    file = _open(path)
    footer = _footer(file.schema_arrow, str(path), shape, strict)
    _check_column_types(file.schema_arrow, footer.shape, path)
    return file, footer


def iter_latent_batches(path: Location, file: pq.ParquetFile, shape: tuple[int, int, int],
                        rows: int = 4096) -> Iterator[LatentBatch]:
    """Validated batches of at most `rows` rows of an open latent file: memory bounded by `rows`, not the file."""
    first = 0
    try:
        for record_batch in file.iter_batches(batch_size=rows):
            table = pa.Table.from_batches([record_batch])
            yield latent_batch_from_columns(numpy_columns(table, str(path), first), shape, str(path), first)
            first += len(table)
    except (OSError, pa.ArrowException) as err:
        raise LatentDataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from None


def _read_file(path: Location, file: pq.ParquetFile, shape: tuple[int, int, int]) -> LatentBatch:
    try:
        table = file.read()
    except (OSError, pa.ArrowException) as err:
        raise LatentDataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from None
    return latent_batch_from_columns(numpy_columns(table, str(path)), shape, str(path))


def _first_null(column: pa.Array, width: int = 1) -> int:
    return int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) // width


def numpy_columns(table: pa.Table, source: str, first_row: int = 0) -> dict[str, np.ndarray]:
    """Arrow columns as numpy, fixed-size lists as [rows, width] views of their flat values: no per-row Python
    objects (Ray Data's own numpy batches hold one array object per row, ~4x slower for the metric pool). A null,
    in a row or inside a row's list, is refused naming the column and the first such row (`first_row` on)."""
    columns = {}
    for name in table.column_names:
        column = table[name].combine_chunks()
        if column.null_count:
            raise LatentDataError(f"{source}: column '{name}': {column.null_count} null value(s) (first: row "
                                  f"{first_row + _first_null(column)}); every row needs a value: fill or drop "
                                  "those rows")
        if pa.types.is_fixed_size_list(column.type):
            width = column.type.list_size
            flat = column.flatten()
            if flat.null_count:
                raise LatentDataError(f"{source}: column '{name}': {flat.null_count} null value(s) inside the "
                                      f"lists (first: row {first_row + _first_null(flat, width)}); every value "
                                      "must be a number")
            columns[name] = flat.to_numpy(zero_copy_only=False).reshape(-1, width)
        else:
            columns[name] = column.to_numpy(zero_copy_only=False)
    return columns


def check_one_set(paths: Sequence[Location], footers: Sequence[Footer]) -> None:
    """Files read together must come from one write: same shape, tokenizer and statistics (where present), and
    the optional mask column in all or none. The message names the first file that differs from the first."""
    first = footers[0]
    for path, footer in zip(paths[1:], footers[1:]):
        if footer.shape != first.shape:
            raise LatentDataError(f"{path}: column '{LATENT}': shape {list(footer.shape)} differs from "
                                  f"{list(first.shape)} in {paths[0]}")
        stats = (footer.tokenizer_id, footer.stats and footer.stats[2])
        if stats != (first.tokenizer_id, first.stats and first.stats[2]):
            raise LatentDataError(f"{path}: metadata '{TOKENIZER_KEY}'/'{HASH_KEY}' differ from {paths[0]}: "
                                  "files come from different writes")
        if footer.has_mask != first.has_mask:
            raise LatentDataError(f"{path}: column '{FG_MASK}' is present in some files and missing in others "
                                  f"(compare {paths[0]})")


def read_latents(paths: Sequence[Location]) -> tuple[LatentBatch, LatentMeta]:
    """Read whole files of one written set (same shape, tokenizer and stats; hash checked) into one batch."""
    if not paths:
        raise LatentDataError("read_latents: no latent files given")
    opened = [open_latent_file(path) for path in paths]
    meta = opened[0][1].meta(str(paths[0]))
    check_norm_hash(meta, str(paths[0]))
    check_one_set(paths, [footer for _, footer in opened])
    batches = [_read_file(path, file, meta.shape) for path, (file, _) in zip(paths, opened)]
    masks = None if batches[0].fg_mask is None else np.concatenate([b.fg_mask for b in batches])
    return LatentBatch(np.concatenate([b.sample_id for b in batches]), np.concatenate([b.label for b in batches]),
                       np.concatenate([b.latent for b in batches]), masks), meta
