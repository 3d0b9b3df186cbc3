"""Tokenizer data parallelism on a real 2-process gloo group (torch.distributed as Ray Train sets it up): the ranks
train on different shards with their own noise yet keep identical autoencoder and discriminator weights (gradients
averaged by the hooks) and log the same averaged values."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

STEPS, BATCH = 2, 8

pytestmark = pytest.mark.e2e  # two spawned processes: ~15 s idle, minutes on a loaded machine


def _rank(rank: int, init_file: str, out: str) -> None:
    from raysweep.nn.distributed import Shard, current_shard
    from raysweep.tokenizers import GanConfig, TokenizerTrainer, build_regularizer, build_tokenizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    shard = current_shard()
    assert shard == Shard(rank, 2)
    torch.manual_seed(0)
    trainer = TokenizerTrainer(build_tokenizer("conv-tiny", "f2d4", 16), build_regularizer("baseline"),
                               batch_size=BATCH, seed=1, gan=GanConfig(start=0, channels=8), shard=shard)
    images = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    logs = trainer.fit(images, STEPS)
    torch.save({"model": trainer.model.state_dict(), "disc": trainer.adversarial.discriminator.state_dict(),
                "logs": logs, "noise": trainer._noise_generator().initial_seed()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_keep_identical_weights_and_draw_their_own_noise(tmp_path: Path) -> None:
    mp.spawn(_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for part in ("model", "disc"):
        for key, value in r0[part].items():
            if value.is_floating_point() and "running" not in key:  # BatchNorm running stats stay per rank
                assert torch.equal(value, r1[part][key]), (part, key)
    assert r0["logs"] == r1["logs"]  # logs are averaged over the ranks
    assert r0["noise"] != r1["noise"]  # each rank its own posterior noise
    torch.manual_seed(0)
    from raysweep.tokenizers import build_tokenizer

    initial = build_tokenizer("conv-tiny", "f2d4", 16).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in r0["model"].items())  # it did train
