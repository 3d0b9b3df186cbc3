"""The paper's Table 2, typed in by hand: architecture of SiT-{B,XL} and LightningDiT-{B,XL} and their recipes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from raysweep.config import DiffusionTrial, load_study
from raysweep.diffusion.backbones import build_backbone, recipe_for
from raysweep.hashing import flatten
from raysweep.nn.blocks import Mlp, SwiGLU

# preset: (#layers, hidden dimension, #heads) — Table 2, "Architecture"
ARCHITECTURE = {"SiT-B": (12, 768, 12), "SiT-XL": (28, 1152, 16),
                "LightningDiT-B": (12, 768, 12), "LightningDiT-XL": (28, 1152, 16)}
# preset: (timestep sampling, loss, training steps, batch size, learning rate, AdamW β2) — Table 2, "Optimization"
OPTIMIZATION = {"SiT-B": ("uniform", "mse", 400_000, 256, 1e-4, 0.999),
                "SiT-XL": ("uniform", "mse", 80_000, 256, 1e-4, 0.999),
                "LightningDiT-B": ("logit_normal", "mse+cos", 100_000, 1024, 2e-4, 0.95),
                "LightningDiT-XL": ("logit_normal", "mse+cos", 100_000, 1024, 2e-4, 0.95)}


@pytest.mark.parametrize("name", list(ARCHITECTURE))
def test_architecture_as_in_table_2(name: str) -> None:
    layers, width, heads = ARCHITECTURE[name]
    with torch.device("meta"):  # shapes only
        model = build_backbone(name, in_channels=32, input_size=16, num_classes=1000)
    lightning = name.startswith("LightningDiT")
    assert model.patch_size == 1 and model.x_embedder.kernel_size == (1, 1) and model.grid == (16, 16)
    assert len(model.blocks) == layers and model.x_embedder.out_channels == width
    # position embedding: sinusoidal (added to tokens) vs RoPE (rotates q, k)
    assert (model.rope is not None, model.pos_embed is None) == (lightning, lightning)
    norm = nn.RMSNorm if lightning else nn.LayerNorm
    for block in model.blocks:
        assert block.attn.num_heads == heads and block.attn.head_dim == width // heads
        assert isinstance(block.norm1, norm) and isinstance(block.norm2, norm)
        assert isinstance(block.ffn, SwiGLU if lightning else Mlp)
        for qk_norm in (block.attn.q_norm, block.attn.k_norm):  # QK-norm over each head's channels
            assert isinstance(qk_norm, norm) and tuple(qk_norm.weight.shape) == (width // heads,)
    assert isinstance(model.final_layer.norm, norm)


@pytest.mark.parametrize("name", list(OPTIMIZATION))
def test_optimization_as_in_table_2(name: str) -> None:
    recipe = recipe_for(name)
    assert (recipe.timestep_sampler, recipe.loss, recipe.steps, recipe.batch_size, recipe.lr, recipe.beta2) == \
        OPTIMIZATION[name]
    kwargs = recipe.trainer_kwargs()
    assert kwargs["lr"] == OPTIMIZATION[name][4] and kwargs["beta2"] == OPTIMIZATION[name][5]


def test_logit_normal_recipe_is_standard_and_unknown_preset_lists_allowed() -> None:
    assert dict(recipe_for("LightningDiT-B").sampler_params) == {"mu": 0.0, "sigma": 1.0}
    with pytest.raises(ValueError, match="LightningDiT-B"):
        recipe_for("DiT-B")


@pytest.mark.parametrize("name", list(OPTIMIZATION))
def test_study_trial_defaults_to_its_backbones_recipe(name: str) -> None:
    """A study that names only the backbone trains with Table 2's recipe (the trial's unset fields come from it)."""
    trial = DiffusionTrial(backbone=name)
    assert (trial.timestep_sampler, trial.loss, trial.steps, trial.batch_size, trial.lr, trial.beta2) == \
        OPTIMIZATION[name]
    assert trial.ema_decay == 0.9999 and trial.weight_decay == 0.0
    assert trial.trainer_kwargs() == {**recipe_for(name).trainer_kwargs(), "compile": False,
                                      "grad_checkpointing": False}
    assert flatten(trial.model_dump())["lr"] == OPTIMIZATION[name][4]  # what the diffusion stage logs as params


def test_study_keys_override_the_recipe() -> None:
    trial = DiffusionTrial(backbone="LightningDiT-B", lr=3e-4, grad_clip=None, timestep_sampler="uniform")
    assert trial.lr == 3e-4 and trial.grad_clip is None and trial.sampler_params == {}  # logit-normal's μ, σ dropped
    assert trial.beta2 == 0.95 and trial.loss == "mse+cos" and trial.batch_size == 1024  # the rest: the recipe's
    assert DiffusionTrial(backbone="SiT-B", timestep_sampler="logit_normal").sampler_params == {}


def test_paper_study_trains_table_2() -> None:
    study = load_study(Path(__file__).parents[1] / "experiments" / "paper" / "table1.yaml")
    resolved = {t.backbone: (t.timestep_sampler, t.loss, t.steps, t.batch_size, t.lr, t.beta2)
                for t in study.diffusion_trials}
    assert resolved == OPTIMIZATION
