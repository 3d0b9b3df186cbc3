"""What Ray Data really hands over for latent Parquet files turns into the same LatentBatch as our own reader, and
latent stores on pyarrow.fs URIs (storage.latents) work end to end: writer, readers, the metric pool
(Ray Data reads)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray

from raysweep.data import (
    LatentBatch,
    latent_batch_from_columns,
    latent_files,
    read_latent_meta,
    read_latents,
    write_latents,
)
from raysweep.engine.metric_pool import MetricPool
from raysweep.engine.store import Store
from raysweep.latent_files import metrics_for_files
from raysweep.metrics import MetricSet

SHAPE = (2, 3, 3)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2,  # ListFiles holds 1 CPU beside the 0.5-CPU actor
             include_dashboard=False, log_to_driver=False)
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


def test_file_uri_latent_store_goes_through_pyarrow_fs(tmp_path: Path, local_ray: None) -> None:
    """storage.latents as a URI: writer, reader, `raysweep metrics` and the Ray Data metric pool all use it."""
    rng = np.random.default_rng(1)
    arrays = {"latents": rng.normal(size=(11, *SHAPE)).astype(np.float32), "labels": rng.integers(0, 4, 11),
              "fg_masks": rng.integers(0, 2, (11, 3, 3)).astype(np.uint8)}
    uri = f"file://{tmp_path}/shared"
    location = Store(tmp_path / "root", uri).latents("tok", "val")
    assert location == f"{uri}/tok/val"
    write_latents(location, **arrays, tokenizer_id="t", rows_per_file=2)  # 6 parts, then 3: stale ones go
    paths = write_latents(location, **arrays, tokenizer_id="t", rows_per_file=4)
    on_disk = tmp_path / "shared" / "tok" / "val"
    assert paths == latent_files(location) == [f"{location}/part-0000{i}.parquet" for i in range(3)]
    assert sorted(p.name for p in on_disk.iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
    batch, meta = read_latents(paths)
    np.testing.assert_array_equal(batch.latent, arrays["latents"])
    np.testing.assert_array_equal(batch.fg_mask, arrays["fg_masks"])
    assert meta.norm_hash == read_latent_meta(on_disk / "part-00000.parquet").norm_hash

    names = ["viv", "sec"]
    metrics = MetricSet(names).with_footer(meta)
    pool = MetricPool(1)  # Ray Data reads on the URI's filesystem
    pooled = metrics.finalize(pool.merged_states(location, metrics, meta.shape, batch_size=3))
    pool.close()
    in_process = metrics_for_files([location], names).values  # the `raysweep metrics` reader, same URI
    local = metrics_for_files([on_disk], names).values
    assert set(in_process) == set(local) and local and set(local) <= set(pooled)  # the CLI folds curve grids in
    for key, value in local.items():  # curves hold null (NaN here) for classes too small to score
        np.testing.assert_array_equal(in_process[key], value, err_msg=key)
        np.testing.assert_allclose(pooled[key], np.array(value, dtype=float), rtol=1e-6, atol=1e-9,
                                   err_msg=key)  # float32 sums, other splits


def test_metric_pool_does_not_starve_its_reads_on_a_one_cpu_ray(tmp_path: Path) -> None:
    """The pool's actors hold no CPU, so on a 1-CPU Ray the stream's listing and reads still run (an actor that
    held the only CPU used to hang the stage)."""
    import subprocess
    import sys

    write_latents(tmp_path, np.random.default_rng(0).normal(size=(40, 2, 4, 4)), np.arange(40) % 4,
                  tokenizer_id="t", rows_per_file=10)
    script = ("import ray, sys; from raysweep.metrics import MetricSet; from raysweep.data import read_latent_meta, "
              "latent_files; from raysweep.engine.metric_pool import MetricPool; "
              "ray.init(address='local', num_cpus=1, include_dashboard=False, log_to_driver=False); "
              "meta = read_latent_meta(latent_files(sys.argv[1])[0]); m = MetricSet(['sec']); "
              "v = m.finalize(MetricPool(1, 1).merged_states(sys.argv[1], m, meta.shape, 10)); print(sorted(v)[0])")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "latent/smoothness/sec" in done.stdout
