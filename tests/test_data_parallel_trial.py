"""A 2-worker data-parallel Tune trial (Ray Train TorchTrainer, gloo on CPU, a tiny SiT) that dies after its step-4
checkpoint and is relaunched by Tune: rank 0's MLflow loss history equals single-process training on the same
global batch within float tolerance, and the resumed run ends in the single-process state."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray
import torch
from mlflow import MlflowClient
from ray import tune

from raysweep.config.spec import ResourcesSpec, TrialResources
from raysweep.engine.checkpointing import STATE_FILE
from raysweep.engine.data_parallel import Scaling, with_resources
from raysweep.nn.distributed import Shard

TOTAL, EVERY, CRASH_AT, BATCH = 6, 2, 4, 4
CONFIG: dict[str, Any] = dict(lr=1e-3, beta2=0.95, weight_decay=0.01, ema_decay=0.9, timestep_sampler="logit_normal",
                              loss="mse+cos", seed=3, grad_clip=0.5)


@pytest.mark.e2e
def test_two_worker_trial_matches_single_process_and_resumes(tmp_path: Path) -> None:
    from raysweep.tracking import Tracker

    def _setup() -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Trainer (data-parallel inside a Train worker) and data, built alike in the workers and on the driver
        (nested: Ray pickles it by value)."""
        from raysweep.diffusion import DiffusionTrainer, build_backbone
        from raysweep.nn.distributed import current_shard

        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = build_backbone("SiT-T", in_channels=2, input_size=4, num_classes=2, label_dropout=0.3, depth=2,
                               hidden_size=32, num_heads=2)
        latents = torch.randn(10, 2, 4, 4, generator=torch.Generator().manual_seed(0))
        return DiffusionTrainer(model, shard=current_shard(), **CONFIG), latents, torch.tensor([0, 1] * 5)

    uri, marker = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "crashed"
    run_id = Tracker(uri, "dp").open_run("diffusion/SiT/0", "diffusion", "key")  # DB made on the driver

    def trainable(config: dict[str, Any]) -> None:
        import torch.distributed

        from raysweep.engine.checkpointing import train_with_checkpoints
        from raysweep.nn.distributed import in_train_worker, is_chief

        if not in_train_worker():  # the launcher's closing call: a stage would report its stored result here
            tune.report({"done": 1})
            return
        trainer, latents, labels = _setup()

        def fit(n: int, on_log: Any) -> None:
            if trainer.step == CRASH_AT and not marker.exists():
                trainer.fit(latents, labels, 1, BATCH, on_log)  # progress past the checkpoint, then die
                torch.distributed.barrier()  # both ranks have seen no marker
                if is_chief():
                    marker.touch()
                torch.distributed.barrier()
                raise RuntimeError("simulated node loss")
            trainer.fit(latents, labels, n, BATCH, on_log)

        tracker = Tracker(uri, "dp") if is_chief() else None
        train_with_checkpoints(trainer, fit, TOTAL, EVERY, tracker, run_id if tracker else None)

    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        grid = tune.Tuner(with_resources(trainable, {"CPU": 2}, workers=2), run_config=tune.RunConfig(
            name="dp", storage_path=str(tmp_path / "tune"), verbose=0,
            failure_config=tune.FailureConfig(max_failures=1))).fit()
    finally:
        ray.shutdown()

    result = grid[0]
    assert result.error is None and marker.exists() and result.metrics["done"] == 1  # crashed once, then finished
    history = sorted(MlflowClient(uri).get_metric_history(run_id, "train/loss"), key=lambda m: m.step)
    straight, latents, labels = _setup()
    reference: list[float] = []
    straight.fit(latents, labels, TOTAL, BATCH, on_log=lambda step, logs: reference.append(logs["loss"]))
    assert [m.step for m in history] == list(range(1, TOTAL + 1))  # the lost step 5 was not logged twice
    assert [m.value for m in history] == pytest.approx(reference, rel=1e-5, abs=1e-7)
    assert len(set(reference)) == TOTAL  # a loss that changes each step: the comparison can fail
    checkpoints = sorted(p for p in Path(result.path).glob("train/checkpoint_*") if p.is_dir())
    state = torch.load(checkpoints[-1] / STATE_FILE, weights_only=True)
    assert state["step"] == TOTAL
    for part in ("model", "ema"):
        for key, value in straight.state_dict()[part].items():
            torch.testing.assert_close(state[part][key], value, rtol=1e-4, atol=1e-6, msg=f"{part} {key}")


def test_shard_splits_a_batch_evenly_and_refuses_a_remainder() -> None:
    rows = [Shard(rank, 4).of(8) for rank in range(4)]
    assert [list(range(8))[r] for r in rows] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    with pytest.raises(ValueError, match="not divisible by the 4"):
        Shard(0, 4).of(6)


def test_resources_split_over_workers_and_bad_splits_are_refused() -> None:
    assert Scaling.of({"CPU": 16, "GPU": 8}, 8) == Scaling(8, 2.0, 1.0)
    assert Scaling.of({"CPU": 2, "GPU": 0.5}, 1) == Scaling(1, 2.0, 0.5)
    with pytest.raises(ValueError, match="must be a multiple of workers"):
        TrialResources(gpu=4, workers=3)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        TrialResources(workers=0)
    with pytest.raises(ValueError, match="for metric_actor"):
        ResourcesSpec(metric_actor={"workers": 2})
