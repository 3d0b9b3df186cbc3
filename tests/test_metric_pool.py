"""The study's latent-metric pool on real Ray: the same numbers as one in-process pass, over several tokenizers'
latents (files split into row ranges across actors), with the pool started once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raysweep.data import latent_files, read_latents, write_latents
from raysweep.metrics import build_metric, compute_metrics
from raysweep.pipeline.metric_pool import MetricPool, spans
from raysweep.pipeline.metric_stage import with_known_stats

NAMES = ["viv", "sec", "lnc", "spatial"]


def _write(directory: Path, seed: int, n: int = 90) -> None:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    latents = rng.normal(size=(n, 2, 4, 4)).astype(np.float32) + labels[:, None, None, None]
    write_latents(directory, latents, labels, fg_masks=(rng.random((n, 4, 4)) > 0.5).astype(np.uint8),
                  tokenizer_id=f"t{seed}", rows_per_file=40)  # 3 files: 40, 40, 10 rows


def test_spans_cover_every_row_once(tmp_path: Path) -> None:
    _write(tmp_path / "t", 0)
    covered = [(Path(p).name, a, b) for p, a, b in spans(tmp_path / "t", 16)]
    assert covered[:3] == [("part-00000.parquet", 0, 16), ("part-00000.parquet", 16, 32),
                           ("part-00000.parquet", 32, 40)]
    assert sum(b - a for _, a, b in covered) == 90


@pytest.mark.e2e
def test_pool_equals_one_pass_in_process_for_every_tokenizer(tmp_path: Path) -> None:
    import ray

    for seed in range(2):
        _write(tmp_path / f"t{seed}", seed)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        pool = MetricPool(2)
        for seed in range(2):
            directory = tmp_path / f"t{seed}"
            batch, meta = read_latents(latent_files(directory))
            params = with_known_stats(NAMES, {}, meta)
            expected = compute_metrics([batch], NAMES, params)
            merged = pool.merged_states(directory, NAMES, params, meta.shape, batch_size=16)
            for name in NAMES:
                got = build_metric(name, **params.get(name, {})).finalize(merged[name])
                for key, value in got.items():
                    np.testing.assert_allclose(np.asarray(value), np.asarray(expected[key]), rtol=1e-5, atol=1e-7,
                                               err_msg=key)
        pool.close()
    finally:
        ray.shutdown()
