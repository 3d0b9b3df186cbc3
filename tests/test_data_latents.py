"""The latent Parquet contract: round trips, metadata, foreign readers, every validation error, and locations
(paths and pyarrow.fs URIs)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysweep.data import (
    LatentDataError,
    check_norm_hash,
    latent_batch_from_columns,
    latent_files,
    latent_schema,
    read_latent_meta,
    read_latents,
    write_latents,
)
from raysweep.data.location import check_location, join

SHAPE = (3, 2, 4)


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 11
    scale, shift = np.array([1.0, 5.0, 0.1])[:, None, None], np.array([0.0, -3.0, 7.0])[:, None, None]
    latents = rng.normal(size=(n, *SHAPE)) * scale + shift  # channels on different scales
    return {"latents": latents.astype(np.float32), "labels": rng.integers(0, 5, n),
            "sample_ids": rng.permutation(100)[:n] + 1000, "fg_masks": rng.integers(0, 2, (n, 2, 4)).astype(np.uint8)}


def test_round_trip_over_several_files(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    paths = write_latents(tmp_path, **arrays, tokenizer_id="tok-a", extra_metadata={"note": "x"}, rows_per_file=4)
    assert [p.name for p in paths] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert latent_files(tmp_path) == paths and not list(tmp_path.glob(".*"))
    batch, meta = read_latents(paths)
    np.testing.assert_array_equal(batch.latent, arrays["latents"])
    np.testing.assert_array_equal(batch.label, arrays["labels"])
    np.testing.assert_array_equal(batch.sample_id, arrays["sample_ids"])
    np.testing.assert_array_equal(batch.fg_mask, arrays["fg_masks"])
    assert (batch.latent.dtype, batch.label.dtype, batch.sample_id.dtype, batch.fg_mask.dtype) == (
        np.float32, np.int32, np.int64, np.uint8)
    assert meta.shape == SHAPE and meta.tokenizer_id == "tok-a" and meta.extra == {"note": "x"} and len(batch) == 11


def test_channel_stats_cover_the_whole_set(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    paths = write_latents(tmp_path, arrays["latents"], arrays["labels"], tokenizer_id="t", rows_per_file=3)
    z = arrays["latents"].astype(np.float64).transpose(1, 0, 2, 3).reshape(3, -1)  # (C, N*H*W)
    for path in paths:  # every file carries the statistics of all rows, not of its own
        meta = read_latent_meta(path)
        np.testing.assert_allclose(meta.channel_mean, z.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(meta.channel_std, np.sqrt(((z - z.mean(axis=1, keepdims=True)) ** 2).mean(axis=1)),
                                   rtol=1e-12)
        check_norm_hash(meta)
    standard = meta.standardise(arrays["latents"])
    np.testing.assert_allclose(standard.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(standard.std(axis=(0, 2, 3)), 1, atol=1e-5)
    np.testing.assert_allclose(meta.unstandardise(standard), arrays["latents"], rtol=1e-5, atol=1e-5)


def test_default_ids_and_no_mask(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    batch, _ = read_latents(write_latents(tmp_path, arrays["latents"], arrays["labels"], tokenizer_id="t"))
    np.testing.assert_array_equal(batch.sample_id, np.arange(11))
    assert batch.fg_mask is None


def test_rewrite_removes_stale_parts(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    write_latents(tmp_path, arrays["latents"], arrays["labels"], tokenizer_id="t", rows_per_file=2)
    paths = write_latents(tmp_path, arrays["latents"][:3], arrays["labels"][:3], tokenizer_id="t", rows_per_file=2)
    assert latent_files(tmp_path) == paths and len(paths) == 2


def test_plain_pyarrow_and_pandas_read_the_files(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    write_latents(tmp_path, **arrays, tokenizer_id="tok", rows_per_file=5)
    table = pq.read_table(tmp_path)  # the directory, as a dataset, without raysweep
    assert table.num_rows == 11 and set(table.column_names) == {"sample_id", "label", "latent", "fg_mask"}
    metadata = table.schema.metadata
    assert json.loads(metadata[b"raysweep.latent_shape"]) == list(SHAPE)
    assert metadata[b"raysweep.tokenizer_id"] == b"tok"
    assert len(json.loads(metadata[b"raysweep.channel_mean"])) == 3 and b"raysweep.norm_hash" in metadata
    frame = pd.read_parquet(tmp_path / "part-00000.parquet")
    row = frame.set_index("sample_id").loc[int(arrays["sample_ids"][2])]
    np.testing.assert_array_equal(np.asarray(row["latent"], np.float32).reshape(SHAPE), arrays["latents"][2])
    assert row["label"] == arrays["labels"][2]


def test_schema_types(tmp_path: Path) -> None:
    schema = latent_schema(SHAPE, with_mask=True, metadata={"k": "v"})
    assert schema.field("latent").type == pa.list_(pa.float32(), 24)
    assert schema.field("fg_mask").type == pa.list_(pa.uint8(), 8)
    assert schema.field("sample_id").type == pa.int64() and schema.field("label").type == pa.int32()
    assert schema.metadata == {b"k": b"v"} and "fg_mask" not in latent_schema(SHAPE, False, {}).names


def test_columns_as_2d_or_object_arrays_give_the_same_batch(arrays: dict[str, np.ndarray]) -> None:
    flat = arrays["latents"].reshape(11, -1)
    masks = arrays["fg_masks"].reshape(11, -1)
    objects = np.empty(11, dtype=object)
    objects[:] = list(flat)
    mask_objects = np.empty(11, dtype=object)
    mask_objects[:] = list(masks)
    for latent, fg_mask in ((flat, masks), (objects, mask_objects)):
        batch = latent_batch_from_columns({"sample_id": arrays["sample_ids"], "label": arrays["labels"],
                                           "latent": latent, "fg_mask": fg_mask}, SHAPE)
        np.testing.assert_array_equal(batch.latent, arrays["latents"])
        np.testing.assert_array_equal(batch.fg_mask, arrays["fg_masks"])
        assert batch.label.dtype == np.int32 and batch.latent.dtype == np.float32


# --- validation ------------------------------------------------------------------------------------------------


def _columns(arrays: dict[str, np.ndarray], **change: object) -> dict[str, object]:
    columns = {"sample_id": arrays["sample_ids"], "label": arrays["labels"],
               "latent": arrays["latents"].reshape(11, -1), "fg_mask": arrays["fg_masks"].reshape(11, -1)}
    return {k: v for k, v in {**columns, **change}.items() if v is not None}


@pytest.mark.parametrize("change, column", [
    ({"label": None}, "'label' is missing"),
    ({"latent": None}, "'latent' is missing"),
    ({"sample_id": None}, "'sample_id' is missing"),
    ({"latent": np.zeros((11, 23), np.float32)}, "'latent'"),
    ({"fg_mask": np.zeros((11, 9), np.uint8)}, "'fg_mask'"),
    ({"fg_mask": np.full((11, 8), 3, np.uint8)}, "'fg_mask'"),
    ({"label": np.zeros(10, np.int64)}, "'label'"),
    ({"label": np.zeros(11, np.float32)}, "'label'"),
    ({"label": np.full(11, -1)}, "'label': label -1 is out of range"),  # the "unlabelled" sentinel
    ({"label": np.full(11, 2**31)}, "'label': label 2147483648 is out of range"),  # int32 would wrap it negative
])
def test_bad_batches_name_the_column(arrays: dict[str, np.ndarray], change: dict[str, object], column: str) -> None:
    with pytest.raises(LatentDataError, match=f"^batch: column {column}"):
        latent_batch_from_columns(_columns(arrays, **change), SHAPE)


def test_non_finite_latents_are_rejected_on_write_and_read(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    bad = arrays["latents"].copy()
    bad[4, 1, 0, 0] = np.nan
    with pytest.raises(LatentDataError, match="column 'latent'.*NaN"):
        write_latents(tmp_path, bad, arrays["labels"], tokenizer_id="t")
    (path,) = write_latents(tmp_path, arrays["latents"], arrays["labels"], tokenizer_id="t")
    table = pq.read_table(path)
    flat = table["latent"].combine_chunks().flatten().to_numpy().copy()
    flat[30] = np.inf
    latent = pa.FixedSizeListArray.from_arrays(pa.array(flat), 24)
    pq.write_table(table.set_column(table.schema.get_field_index("latent"), "latent", latent), path)
    with pytest.raises(LatentDataError, match=rf"{path.name}: column 'latent': 1 row\(s\) contain NaN or inf"):
        read_latents([path])


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": np.zeros(3, np.int64)}, "column 'label'"),
    ({"labels": np.zeros(11)}, "column 'label': expected integers"),
    ({"sample_ids": np.zeros(11, np.int64)}, "column 'sample_id'.*unique"),
    ({"fg_masks": np.zeros((11, 4, 2), np.uint8)}, "column 'fg_mask'"),
    ({"fg_masks": np.full((11, 2, 4), 2, np.uint8)}, "column 'fg_mask'"),
    ({"tokenizer_id": ""}, "raysweep.tokenizer_id"),
    ({"extra_metadata": {"raysweep.norm_hash": "0"}}, "reserved"),
])
def test_bad_writes_raise(tmp_path: Path, arrays: dict[str, np.ndarray], kwargs: dict[str, object],
                          message: str) -> None:
    args = {"latents": arrays["latents"], "labels": arrays["labels"], "tokenizer_id": "t", **kwargs}
    with pytest.raises(LatentDataError, match=message):
        write_latents(tmp_path, **args)
    assert not list(tmp_path.iterdir())


def _edit_metadata(path: Path, change: dict[str, str | None]) -> None:
    """Rewrite `path` with metadata keys set (or removed, for None)."""
    table = pq.read_table(path)
    metadata = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    metadata = {k: v for k, v in {**metadata, **change}.items() if v is not None}
    pq.write_table(table.replace_schema_metadata(metadata), path)


@pytest.mark.parametrize("change, message", [
    ({"raysweep.latent_shape": None}, "'raysweep.latent_shape' is missing"),
    ({"raysweep.latent_shape": "[3, 2]"}, "'raysweep.latent_shape' must be"),
    ({"raysweep.latent_shape": "not json"}, "'raysweep.latent_shape' is missing or not valid JSON"),
    ({"raysweep.channel_std": "[1.0]"}, "'raysweep.channel_std' must be a JSON list of 3"),
    ({"raysweep.tokenizer_id": None}, "'raysweep.tokenizer_id' is missing"),
])
def test_bad_metadata_names_file_and_key(tmp_path: Path, arrays: dict[str, np.ndarray], change: dict[str, str | None],
                                         message: str) -> None:
    (path,) = write_latents(tmp_path, arrays["latents"], arrays["labels"], tokenizer_id="t")
    _edit_metadata(path, change)
    for read in (read_latent_meta, lambda p: read_latents([p])):
        with pytest.raises(LatentDataError, match=f"^{path}: metadata {message}"):
            read(path)


def test_edited_statistics_fail_the_hash(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    (path,) = write_latents(tmp_path, arrays["latents"], arrays["labels"], tokenizer_id="t")
    meta = read_latent_meta(path)
    _edit_metadata(path, {"raysweep.channel_mean": json.dumps([0.0, 0.0, 0.0])})
    with pytest.raises(LatentDataError, match="norm_hash"):
        check_norm_hash(read_latent_meta(path))
    with pytest.raises(LatentDataError, match=f"{path}: metadata 'raysweep.norm_hash'"):
        read_latents([path])
    check_norm_hash(meta)  # the original statistics still match


def test_files_must_agree(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    (a,) = write_latents(tmp_path / "a", arrays["latents"], arrays["labels"], tokenizer_id="t")
    (b,) = write_latents(tmp_path / "b", arrays["latents"][:, :, :1], arrays["labels"], tokenizer_id="t")
    (c,) = write_latents(tmp_path / "c", arrays["latents"][:5], arrays["labels"][:5], tokenizer_id="t")
    (d,) = write_latents(tmp_path / "d", **arrays, tokenizer_id="t")
    with pytest.raises(LatentDataError, match=f"^{b}: column 'latent': shape"):
        read_latents([a, b])
    with pytest.raises(LatentDataError, match=f"^{c}: .*different writes"):
        read_latents([a, c])
    with pytest.raises(LatentDataError, match="'fg_mask' is present in some files"):
        read_latents([a, d])


def test_missing_columns_and_wrong_widths_name_the_file(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    (path,) = write_latents(tmp_path, **arrays, tokenizer_id="t")
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["label"]), path)
    with pytest.raises(LatentDataError, match=f"^{path}: column 'label' is missing"):
        read_latents([path])
    pq.write_table(table, path)
    # [6,2,2] still fits the 24 latent values, but the 8-value masks no longer fit the 2x2 grid
    _edit_metadata(path, {"raysweep.latent_shape": "[6, 2, 2]", "raysweep.channel_mean": "[0, 0, 0, 0, 0, 0]",
                          "raysweep.channel_std": "[1, 1, 1, 1, 1, 1]"})
    with pytest.raises(LatentDataError, match=f"^{path}: column 'fg_mask': .*fixed_size_list of 4"):
        read_latents([path])


def test_corrupt_and_truncated_files(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    (path,) = write_latents(tmp_path, **arrays, tokenizer_id="t")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    for bad in (truncated, garbage):
        for read in (read_latent_meta, lambda p: read_latents([p])):
            with pytest.raises(LatentDataError, match=f"^{bad}: not a readable Parquet file"):
                read(bad)
    with pytest.raises(LatentDataError, match="no latent files"):
        read_latents([])
    with pytest.raises(LatentDataError, match="part-"):
        latent_files(tmp_path / "nowhere")


def test_locations_keep_their_kind_and_uri_query() -> None:
    assert join("s3://bucket/p/?endpoint_override=minio:9000", "tok", "val") == (
        "s3://bucket/p/tok/val?endpoint_override=minio:9000")
    assert join("/data/latents", "tok", "val") == Path("/data/latents/tok/val")
    with pytest.raises(ValueError, match=r"^unsupported scheme 'ftp://' in 'ftp://h/x'; allowed: a directory or "
                                         r"file://, s3://, gs://"):
        check_location("ftp://h/x")

