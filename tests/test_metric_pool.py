"""The study's latent-metric pool on real Ray: Ray Data streams each tokenizer's latents to the same long-lived
actors, and the merged states give the numbers of one in-process pass, also when a node is lost mid-stream."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from raysweep.data import latent_files, read_latent_meta, read_latents, write_latents
from raysweep.engine.metric_pool import MetricPool
from raysweep.metrics import MetricSet

NAMES = ["viv", "sec", "lnc", "spatial"]


def _write(directory: Path, seed: int, n: int = 90, rows_per_file: int = 40) -> None:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    latents = rng.normal(size=(n, 2, 4, 4)).astype(np.float32) + labels[:, None, None, None]
    write_latents(directory, latents, labels, fg_masks=(rng.random((n, 4, 4)) > 0.5).astype(np.uint8),
                  tokenizer_id=f"t{seed}", rows_per_file=rows_per_file)  # 40, 40, 10 rows by default


def _pooled_and_one_pass(pool: MetricPool, directory: Path) -> tuple[dict, dict]:
    meta = read_latent_meta(latent_files(directory)[0])
    metrics = MetricSet(NAMES).with_footer(meta)
    pooled = metrics.finalize(pool.merged_states(directory, metrics, meta.shape, batch_size=16))
    return pooled, metrics.run([read_latents(latent_files(directory))[0]])


def _assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, value in got.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(expected[key]), rtol=1e-5, atol=1e-7, err_msg=key)


@pytest.mark.e2e
def test_pool_equals_one_pass_in_process_for_every_tokenizer(tmp_path: Path) -> None:
    import ray

    for seed in range(2):
        _write(tmp_path / f"t{seed}", seed)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        pool = MetricPool(2)
        actors = list(pool.actors)
        for seed in range(2):
            _assert_same(*_pooled_and_one_pass(pool, tmp_path / f"t{seed}"))
        assert pool.actors == actors  # the same actors served both tokenizers
        pool.close()
    finally:
        ray.shutdown()


@pytest.mark.e2e
def test_a_node_lost_mid_stream_costs_its_blocks_not_the_numbers(tmp_path: Path) -> None:
    """A CPU-less head (the driver, the actors) and two worker nodes that run the reads; one worker node goes
    while the stream runs. The blocks that died with it are rebuilt from lineage on the other (an actor that was
    there restarts on a live node), and every block is merged once: the numbers of one pass."""
    import ray
    from ray.cluster_utils import Cluster

    _write(tmp_path / "t", 0, n=1200, rows_per_file=10)  # 120 files: the stream outlives the node
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=1)
    doomed = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        pool = MetricPool(2)
        got: dict = {}
        stream = threading.Thread(target=lambda: got.update(zip(("pooled", "one_pass"),
                                                               _pooled_and_one_pass(pool, tmp_path / "t"))))
        stream.start()
        time.sleep(3.0)
        assert stream.is_alive(), "the stream ended before the node went: nothing was tested"
        cluster.remove_node(doomed)
        stream.join(timeout=240)
        assert not stream.is_alive() and got, "the stream did not survive the lost node"
        _assert_same(got["pooled"], got["one_pass"])
        assert doomed.node_id not in {ray.get(a.node.remote()) for a in pool.actors}
        pool.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
