"""What Ray Data really hands over for latent Parquet files turns into the same LatentBatch as our own reader."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray

from raysweep.data import LatentBatch, latent_batch_from_columns, read_latent_meta, read_latents, write_latents

SHAPE = (2, 3, 3)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _concat(batches: list[LatentBatch]) -> LatentBatch:
    order = np.argsort(np.concatenate([b.sample_id for b in batches]))  # Ray Data need not keep row order
    masks = np.concatenate([b.fg_mask for b in batches])
    return LatentBatch(np.concatenate([b.sample_id for b in batches])[order],
                       np.concatenate([b.label for b in batches])[order],
                       np.concatenate([b.latent for b in batches])[order], masks[order])


def test_ray_data_numpy_batches_match_the_files(tmp_path: Path, local_ray: None) -> None:
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(10, *SHAPE)).astype(np.float32)
    masks = rng.integers(0, 2, (10, 3, 3)).astype(np.uint8)
    paths = write_latents(tmp_path, latents, rng.integers(0, 4, 10), fg_masks=masks, tokenizer_id="t",
                          rows_per_file=4)
    shape = read_latent_meta(paths[0]).shape
    expected, _ = read_latents(paths)
    dataset = ray.data.read_parquet(str(tmp_path))

    batches = [latent_batch_from_columns(columns, shape)
               for columns in dataset.iter_batches(batch_size=3, batch_format="numpy")]
    got = _concat(batches)
    for name in ("sample_id", "label", "latent", "fg_mask"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)

    def summarise(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # runs in a Ray worker process
        batch = latent_batch_from_columns(columns, shape)
        return {"sample_id": batch.sample_id, "latent_sum": batch.latent.sum(axis=(1, 2, 3), dtype=np.float64),
                "mask_sum": batch.fg_mask.sum(axis=(1, 2))}

    rows = sorted(dataset.map_batches(summarise, batch_size=4, batch_format="numpy").take_all(),
                  key=lambda row: row["sample_id"])
    np.testing.assert_allclose([row["latent_sum"] for row in rows], latents.sum(axis=(1, 2, 3), dtype=np.float64))
    np.testing.assert_array_equal([row["mask_sum"] for row in rows], masks.sum(axis=(1, 2)))
