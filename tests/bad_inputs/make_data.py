"""Writes the data half of the bad-input corpus (run once; the outputs are committed). Every file breaks one rule
of the latent Parquet contract (raysweep/data/latents.py) or of the image-folder layout, using plain pyarrow/PIL."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from raysweep.data.latents import compute_norm_hash

HERE = Path(__file__).parent


def latent_table(latent: np.ndarray, mask_width: int | None = None, metadata: bool = True,
                 label: bool = True) -> pa.Table:
    """Contract-shaped table for latents [N, C, H, W]; `mask_width` adds an fg_mask of that many values per row."""
    n, c, h, w = latent.shape
    arrays = {"sample_id": pa.array(np.arange(n, dtype=np.int64))}
    if label:
        arrays["label"] = pa.array(np.arange(n, dtype=np.int32) % 2)
    arrays["latent"] = pa.FixedSizeListArray.from_arrays(latent.astype(np.float32).reshape(-1), c * h * w)
    if mask_width is not None:
        arrays["fg_mask"] = pa.FixedSizeListArray.from_arrays(np.ones(n * mask_width, np.uint8), mask_width)
    table = pa.table(arrays)
    if not metadata:
        return table
    finite = np.nan_to_num(latent)
    mean, std = finite.mean(axis=(0, 2, 3)), finite.std(axis=(0, 2, 3))
    meta = {"raysweep.latent_shape": json.dumps([c, h, w]), "raysweep.tokenizer_id": "bad",
            "raysweep.channel_mean": json.dumps(mean.tolist()), "raysweep.channel_std": json.dumps(std.tolist()),
            "raysweep.norm_hash": compute_norm_hash(mean, std)}
    return table.replace_schema_metadata(meta)


def main() -> None:
    rng = np.random.default_rng(0)
    out = HERE / "latents"
    (out / "mismatched_shapes").mkdir(parents=True, exist_ok=True)
    good = rng.normal(size=(16, 4, 4, 4))
    pq.write_table(latent_table(good), out / "truncated.parquet")
    data = (out / "truncated.parquet").read_bytes()
    (out / "truncated.parquet").write_bytes(data[: len(data) // 2])
    (out / "corrupt.parquet").write_bytes(b"PAR1" + rng.integers(0, 256, 600, dtype=np.uint8).tobytes() + b"PAR1")
    nan = good.copy()
    nan[3, 1, 2, 2] = np.nan
    pq.write_table(latent_table(nan), out / "nan_latents.parquet")
    pq.write_table(latent_table(good, mask_width=9), out / "wrong_size_mask.parquet")  # latent H*W = 16
    pq.write_table(latent_table(good, metadata=False), out / "missing_metadata.parquet")
    pq.write_table(latent_table(good, label=False), out / "missing_label_column.parquet")
    pq.write_table(latent_table(good), out / "mismatched_shapes" / "part-00000.parquet")
    pq.write_table(latent_table(rng.normal(size=(16, 2, 4, 4))), out / "mismatched_shapes" / "part-00001.parquet")

    data_dir = HERE / "data"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "plain_file.txt").write_text("a file where the study expects a directory\n")
    for split in ("train", "val"):
        for cls in ("a", "b"):
            for i in range(4):
                image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                path = data_dir / "images" / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(path)
                mask = data_dir / "masks" / split / cls / f"{i}.png"
                mask.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((4, 4), 255, np.uint8)).save(mask)  # 4x4 mask for an 8x8 image

    broken_image_folders(data_dir)
    latent_contract_cases(out)


def broken_image_folders(data_dir: Path) -> None:
    """`corrupt_images`: a .png that is not an image; `empty_class`: class folder 'b' holds no image file."""
    for split in ("train", "val"):
        corrupt = data_dir / "corrupt_images" / split / "a" / "0.png"
        corrupt.parent.mkdir(parents=True, exist_ok=True)
        corrupt.write_bytes(b"\x89PNG but not really an image")
        good = data_dir / "empty_class" / split / "a" / "0.png"
        good.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
        (good.parent.parent / "b").mkdir(exist_ok=True)
        (good.parent.parent / "b" / "notes.txt").write_text("not an image\n")


def _with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


def _shape_only(table: pa.Table) -> pa.Table:
    """Another tool's file: the shape key and none of raysweep's statistics."""
    return table.replace_schema_metadata({"raysweep.latent_shape": table.schema.metadata[b"raysweep.latent_shape"]})


def latent_contract_cases(out: Path) -> None:
    """Latent inputs beyond the columns' basics: empty, degenerate, bad labels, footers that do not fit together.
    Its own generator, so the files above keep their bytes."""
    rng = np.random.default_rng(17)
    good = rng.normal(size=(16, 4, 4, 4))
    pq.write_table(latent_table(good[:0]), out / "empty_rows.parquet")
    pq.write_table(_shape_only(latent_table(good[:0])), out / "empty_rows_plain.parquet")
    (out / "no_parts").mkdir(exist_ok=True)
    (out / "no_parts" / "README.txt").write_text("a latent directory whose writer never wrote a part\n")
    pq.write_table(latent_table(np.full_like(good, 0.25)), out / "constant_latents.parquet")
    pq.write_table(_shape_only(latent_table(np.full_like(good, -3.0))), out / "constant_latents_plain.parquet")
    table = latent_table(good)
    labels = np.arange(16) % 2
    pq.write_table(_with_column(table, "label", pa.array(labels - 1, pa.int32())), out / "negative_labels.parquet")
    pq.write_table(_with_column(table, "label", pa.array(labels + 0.5)), out / "float_labels.parquet")
    pq.write_table(_with_column(table, "label", pa.array(labels + 2**31, pa.int64())),
                   out / "labels_beyond_int32.parquet")
    pq.write_table(_with_column(table, "label", pa.array([None, *labels[1:].tolist()], pa.int32())),
                   out / "null_labels.parquet")
    inf = good.copy()
    inf[5, 0, 1, 1] = np.inf
    pq.write_table(_shape_only(latent_table(inf)), out / "inf_latents_plain.parquet")
    flat = good.astype(np.float32).reshape(16, -1)
    pq.write_table(_with_column(table, "latent", pa.array(list(flat), pa.list_(pa.float32()))),
                   out / "variable_length_latents.parquet")
    pq.write_table(table.replace_schema_metadata({k: v for k, v in table.schema.metadata.items()
                                                  if k != b"raysweep.channel_std"}), out / "partial_statistics.parquet")
    for name, parts in (("mismatched_shapes_plain", (good, rng.normal(size=(16, 2, 4, 4)))),
                        ("mixed_footers", (good, good + 1.0))):
        (out / name).mkdir(exist_ok=True)
        for i, part in enumerate(parts):
            written = latent_table(part)
            pq.write_table(_shape_only(written) if name.endswith("plain") or i else written,
                           out / name / f"part-{i:05d}.parquet")


if __name__ == "__main__":
    main()
