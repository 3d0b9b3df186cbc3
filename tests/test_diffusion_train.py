"""Trainer: a tiny model overfits two points, EMA follows its closed form, resume is exact."""
from __future__ import annotations

import io

import pytest
import torch

from raysweep.diffusion.backbones import build_backbone
from raysweep.diffusion.train import DiffusionTrainer

TINY = {"depth": 2, "hidden_size": 32, "num_heads": 2}


def tiny_model(seed: int, label_dropout: float = 0.0, name: str = "SiT-T") -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone(name, in_channels=2, input_size=4, num_classes=2, label_dropout=label_dropout, **TINY)


def test_tiny_model_overfits_two_points() -> None:
    g = torch.Generator().manual_seed(0)
    latents, labels = torch.randn(2, 2, 4, 4, generator=g), torch.tensor([0, 1])
    trainer = DiffusionTrainer(tiny_model(0), lr=3e-3, ema_decay=0.9, seed=0, grad_clip=1.0)
    losses: list[float] = []
    trainer.fit(latents, labels, steps=150, batch_size=16, on_log=lambda step, logs: losses.append(logs["loss"]))
    assert trainer.step == 150 and len(losses) == 150
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize("name", ["SiT-T", "LightningDiT-T"])
def test_resume_from_mid_checkpoint_is_exact(name: str) -> None:
    latents = torch.randn(10, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1] * 5)
    config = dict(lr=1e-3, beta2=0.95, weight_decay=0.01, ema_decay=0.9, timestep_sampler="logit_normal",
                  loss="mse+cos", seed=3, grad_clip=0.5)

    def run(trainer: DiffusionTrainer, steps: int) -> list[float]:
        out: list[float] = []
        trainer.fit(latents, labels, steps, batch_size=4, on_log=lambda s, logs: out.append(logs["loss"]))
        return out

    straight = DiffusionTrainer(tiny_model(0, label_dropout=0.3, name=name), **config)
    reference = run(straight, 6)

    first = DiffusionTrainer(tiny_model(0, label_dropout=0.3, name=name), **config)
    head = run(first, 3)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = DiffusionTrainer(tiny_model(99, label_dropout=0.3, name=name), **{**config, "seed": 42})
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    tail = run(resumed, 3)

    assert head + tail == reference
    assert resumed.step == straight.step == 6
    for key, value in straight.ema.state_dict().items():
        assert torch.equal(resumed.ema.state_dict()[key], value), key


def test_ema_follows_its_closed_form() -> None:
    model = tiny_model(0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = DiffusionTrainer(model, lr=1e-2, ema_decay=0.75, seed=0, ema_warmup=False)
    trainer.train_step(torch.randn(4, 2, 4, 4), torch.tensor([0, 1, 0, 1]))
    after = model.state_dict()
    for key, ema_value in trainer.velocity_fn_for_sampling().state_dict().items():
        torch.testing.assert_close(ema_value, 0.75 * init[key] + 0.25 * after[key])
    ema = trainer.velocity_fn_for_sampling()
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())


def test_ema_with_warmup_equals_an_independent_recursion() -> None:
    """After N updates the EMA is e_k = d_k e_(k-1) + (1 - d_k) p_k with d_k = min(decay, (1 + k) / (10 + k)),
    computed here in float64 from the model's parameters after each update."""
    model = tiny_model(0)
    names = [name for name, _ in model.named_parameters()]
    ema = {name: p.detach().double().clone() for name, p in model.named_parameters()}
    trainer = DiffusionTrainer(model, lr=1e-2, ema_decay=0.5, seed=0)  # the cap binds from update 8 on
    g = torch.Generator().manual_seed(1)
    for k in range(1, 13):
        trainer.train_step(torch.randn(4, 2, 4, 4, generator=g), torch.tensor([0, 1, 0, 1]))
        decay = min(0.5, (1 + k) / (10 + k))
        assert trainer.ema_decay_at(k) == decay
        for name, p in model.named_parameters():
            ema[name] = decay * ema[name] + (1 - decay) * p.detach().double()
    got = dict(trainer.ema.named_parameters())
    for name in names:
        torch.testing.assert_close(got[name].double(), ema[name], rtol=1e-5, atol=1e-6)
    no_warmup = DiffusionTrainer(tiny_model(0), lr=1e-2, ema_decay=0.5, ema_warmup=False)
    assert [no_warmup.ema_decay_at(k) for k in (1, 100)] == [0.5, 0.5]


def test_trainer_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="uniform"):
        DiffusionTrainer(tiny_model(0), lr=1e-3, timestep_sampler="beta")
    with pytest.raises(ValueError, match="mse"):
        DiffusionTrainer(tiny_model(0), lr=1e-3, loss="l1")


def test_gradient_checkpointing_option_keeps_the_loss_sequence() -> None:
    latents, labels = torch.randn(6, 2, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1] * 3)
    runs = []
    for flag in (False, True):
        trainer = DiffusionTrainer(tiny_model(0), lr=1e-3, seed=0, grad_checkpointing=flag)
        assert trainer.model.grad_checkpointing is flag
        losses: list[float] = []
        trainer.fit(latents, labels, 4, batch_size=4, on_log=lambda s, logs: losses.append(logs["loss"]))
        runs.append(torch.tensor(losses))
    torch.testing.assert_close(runs[0], runs[1])


def test_fit_reports_every_step_in_order_across_log_flushes() -> None:
    latents, labels = torch.randn(6, 2, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1] * 3)
    seen: list[tuple[int, dict[str, float]]] = []
    DiffusionTrainer(tiny_model(0), lr=1e-3, seed=0).fit(latents, labels, 7, batch_size=2, log_sync_every=3,
                                                        on_log=lambda s, logs: seen.append((s, logs)))
    assert [s for s, _ in seen] == list(range(1, 8))
    assert all(type(v) is float for _, logs in seen for v in logs.values())
    assert {"loss", "mse", "grad_norm"} <= set(seen[0][1])
    split: list[float] = []
    trainer = DiffusionTrainer(tiny_model(0), lr=1e-3, seed=0)
    for n in (2, 5):  # flushes fall elsewhere (default group size); the sequence must not change
        trainer.fit(latents, labels, n, batch_size=2, on_log=lambda s, logs: split.append(logs["loss"]))
    assert split == [logs["loss"] for _, logs in seen]
