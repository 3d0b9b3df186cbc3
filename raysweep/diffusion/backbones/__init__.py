"""Backbone presets: one dict, one line each. Depth / width / heads are those of DiT and SiT (S, B, L, XL; B and
XL as in the paper's Table 2); each preset carries its family's Table 2 optimisation recipe. `-T` is a tiny CPU
size that trains a few hundred steps on 4×8×8 latents in about a minute on 2 cores, with a CPU-sized recipe."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raysweep.diffusion.backbones.lightningdit import LightningDiT
from raysweep.diffusion.backbones.sit import SiT
from raysweep.diffusion.backbones.transformer import FlowTransformer
from raysweep.diffusion.recipes import LIGHTNINGDIT_RECIPE, SIT_RECIPE, SIT_XL_RECIPE, Recipe, cpu_recipe


@dataclass(frozen=True)
class Preset:
    family: type[FlowTransformer]
    depth: int
    hidden_size: int
    num_heads: int
    recipe: Recipe


BACKBONES: dict[str, Preset] = {
    "SiT-T": Preset(SiT, depth=4, hidden_size=64, num_heads=4, recipe=cpu_recipe(SIT_RECIPE)),
    "SiT-S": Preset(SiT, depth=12, hidden_size=384, num_heads=6, recipe=SIT_RECIPE),
    "SiT-B": Preset(SiT, depth=12, hidden_size=768, num_heads=12, recipe=SIT_RECIPE),
    "SiT-L": Preset(SiT, depth=24, hidden_size=1024, num_heads=16, recipe=SIT_RECIPE),
    "SiT-XL": Preset(SiT, depth=28, hidden_size=1152, num_heads=16, recipe=SIT_XL_RECIPE),
    "LightningDiT-T": Preset(LightningDiT, depth=4, hidden_size=64, num_heads=4,
                             recipe=cpu_recipe(LIGHTNINGDIT_RECIPE)),
    "LightningDiT-S": Preset(LightningDiT, depth=12, hidden_size=384, num_heads=6, recipe=LIGHTNINGDIT_RECIPE),
    "LightningDiT-B": Preset(LightningDiT, depth=12, hidden_size=768, num_heads=12, recipe=LIGHTNINGDIT_RECIPE),
    "LightningDiT-L": Preset(LightningDiT, depth=24, hidden_size=1024, num_heads=16, recipe=LIGHTNINGDIT_RECIPE),
    "LightningDiT-XL": Preset(LightningDiT, depth=28, hidden_size=1152, num_heads=16, recipe=LIGHTNINGDIT_RECIPE),
}


def get_preset(name: str) -> Preset:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; allowed: {sorted(BACKBONES)}")
    return BACKBONES[name]


def recipe_for(name: str) -> Recipe:
    """The Table 2 optimisation defaults of preset `name` (lr, β2, batch size, steps, EMA, sampler, loss)."""
    return get_preset(name).recipe


def build_backbone(name: str, in_channels: int, input_size: int | tuple[int, int], num_classes: int,
                   patch_size: int = 1, **overrides: Any) -> FlowTransformer:
    """Instantiate preset `name`; `overrides` (label_dropout, mlp_ratio, depth, ...) win."""
    preset = get_preset(name)
    kwargs: dict[str, Any] = {"depth": preset.depth, "hidden_size": preset.hidden_size,
                              "num_heads": preset.num_heads, **overrides}
    return preset.family(in_channels=in_channels, input_size=input_size, num_classes=num_classes,
                         patch_size=patch_size, **kwargs)


__all__ = ["BACKBONES", "FlowTransformer", "LightningDiT", "Preset", "Recipe", "SiT", "build_backbone", "get_preset",
           "recipe_for"]
