"""Latent metrics on a tokenizer's MLflow run (real sqlite store): scalars, resolved params, curves with plots."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from raysweep.metrics import MetricSet
from raysweep.stages.metric_logging import log_latent_metrics
from raysweep.tracking import Tracker
from raysweep.tracking.table import latent_curve


def test_scalars_params_curves_and_plots_land_on_the_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    data = SimpleNamespace(sample_id=np.arange(40), label=labels, fg_mask=None,
                           latent=(rng.normal(size=(40, 2, 8, 8)) + labels[:, None, None, None]).astype(np.float32))
    metrics = MetricSet(["viv", "spatial"])
    values = metrics.run([data])
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "study")
    run_id = tracker.open_run("tokenizer/a", "tokenizer", "hash-a")
    params = metrics.used_params((2, 8, 8))
    log_latent_metrics(tracker, run_id, values, tmp_path / "figures", "latent_metrics", params)
    # a model-metric job's curves on the same run, from its own directory: the latent ones stay
    log_latent_metrics(tracker, run_id, {"latent/x/y_t": np.arange(3.0)}, tmp_path / "model", "model_metrics")

    run = tracker.client.get_run(run_id)
    metrics = Tracker.metrics_of(run)
    assert metrics["latent/velocity/viv"] == float(values["latent/velocity/viv"])
    assert "latent/velocity/viv_t" not in metrics  # curves are artifacts, not metrics
    assert run.data.tags["metrics.spatial.far_dist"] == "3"  # 6 on a 16x16 grid, scaled to 8x8
    assert run.data.tags["metrics.viv.iterations"] == "5"

    artifacts = {a.path for a in tracker.client.list_artifacts(run_id, "figures")}
    assert {"figures/latent_velocity_viv_t.png", "figures/latent_velocity_viv_per_class.png"} <= artifacts
    curves = json.loads(Path(tracker.client.download_artifacts(run_id, "curves/latent_metrics_curves.json",
                                                               str(tmp_path))).read_text())
    assert list(latent_curve(tracker, [run_id], "latent/x/y_t")["value"]) == [0.0, 1.0, 2.0]
    assert len(latent_curve(tracker, [run_id], "latent/velocity/viv_t")) == len(values["latent/velocity/viv_t"])
    assert curves["latent/velocity/viv_per_class"]["grid"] == [0.0, 1.0]
    np.testing.assert_allclose(curves["latent/velocity/viv_t"]["values"], values["latent/velocity/viv_t"])
