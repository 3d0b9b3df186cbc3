"""A real Tune trial that dies after its step-4 checkpoint (one step past it) and is restarted by Tune: its MLflow
loss history and its final state equal those of one uninterrupted in-process run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
import torch
from mlflow import MlflowClient
from ray import tune

from raysweep.engine.checkpointing import STATE_FILE, train_with_checkpoints
from raysweep.tracking import Tracker

TOTAL, EVERY, CRASH_AT, BATCH = 6, 2, 4, 4
CONFIG: dict[str, Any] = dict(lr=1e-3, beta2=0.95, weight_decay=0.01, ema_decay=0.9, timestep_sampler="logit_normal",
                              loss="mse+cos", seed=3, grad_clip=0.5)


def test_tune_trial_resumed_mid_training_reproduces_the_loss_sequence(tmp_path: Path) -> None:
    def setup() -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Trainer and data, built the same way in the trial and on the driver (nested: pickled by value)."""
        from raysweep.diffusion import DiffusionTrainer, build_backbone

        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = build_backbone("LightningDiT-T", in_channels=2, input_size=4, num_classes=2, label_dropout=0.3,
                               depth=2, hidden_size=32, num_heads=2)
        latents = torch.randn(10, 2, 4, 4, generator=torch.Generator().manual_seed(0))
        return DiffusionTrainer(model, **CONFIG), latents, torch.tensor([0, 1] * 5)

    uri, marker = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "crashed"
    run_id = Tracker(uri, "resume").open_run("diffusion/LightningDiT-T/0", "diffusion", "key")  # DB made here

    def trainable(config: dict[str, Any]) -> None:
        trainer, latents, labels = setup()

        def fit(n: int, on_log: Any) -> None:
            if trainer.step == CRASH_AT and not marker.exists():
                trainer.fit(latents, labels, 1, BATCH, on_log)  # progress past the checkpoint, then die
                marker.touch()
                raise RuntimeError("simulated node loss")
            trainer.fit(latents, labels, n, BATCH, on_log)

        train_with_checkpoints(trainer, fit, TOTAL, EVERY, Tracker(uri, "resume"), run_id)

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        grid = tune.Tuner(trainable, run_config=tune.RunConfig(
            name="resume", storage_path=str(tmp_path / "tune"), verbose=0,
            failure_config=tune.FailureConfig(max_failures=1))).fit()
    finally:
        ray.shutdown()

    result = grid[0]
    assert result.error is None and marker.exists()  # it did crash once, and finished after the restart
    history = sorted(MlflowClient(uri).get_metric_history(run_id, "train/loss"), key=lambda m: m.step)
    straight, latents, labels = setup()
    reference: list[float] = []
    straight.fit(latents, labels, TOTAL, BATCH, on_log=lambda step, logs: reference.append(logs["loss"]))
    assert [m.step for m in history] == list(range(1, TOTAL + 1))  # the lost step 5 was not logged twice
    assert [m.value for m in history] == reference
    with result.checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, weights_only=True)
    assert state["step"] == TOTAL
    expected = straight.state_dict()
    for part in ("model", "ema"):
        for key, value in expected[part].items():
            assert torch.equal(state[part][key], value), (part, key)
    assert torch.equal(state["rng"], expected["rng"])
