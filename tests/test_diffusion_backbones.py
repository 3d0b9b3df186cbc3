"""Backbones: exact preset sizes (DiT/SiT table), zero-init, shapes, RoPE / sincos properties, label dropout."""
from __future__ import annotations

import math

import pytest
import torch

from raysweep.diffusion.backbones import BACKBONES, build_backbone
from raysweep.nn.blocks import Rope2D, sincos_pos_embed_2d

# depth, width, heads of DiT / SiT (Peebles & Xie 2023, Table 1), independent of the code under test
SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
TINY = {"depth": 2, "hidden_size": 32, "num_heads": 2}


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Replace the zero-initialised weights so that outputs depend on every input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.mark.parametrize("family", ["SiT", "LightningDiT"])
@pytest.mark.parametrize("size", list(SIZES))
def test_presets_have_exact_depth_width_heads(family: str, size: str) -> None:
    depth, width, heads = SIZES[size]
    with torch.device("meta"):  # shapes only: XL would otherwise allocate ~2 GB
        model = build_backbone(f"{family}-{size}", in_channels=32, input_size=4, num_classes=10)
    assert len(model.blocks) == depth
    for block in model.blocks:
        assert block.attn.num_heads == heads
        assert block.attn.head_dim * heads == width
        assert tuple(block.attn.qkv.weight.shape) == (3 * width, width)
    assert model.x_embedder.out_channels == width


def test_block_parameter_counts_match_closed_form() -> None:
    d, heads = 1152, 16
    hd = d // heads
    with torch.device("meta"):
        sit = build_backbone("SiT-XL", in_channels=32, input_size=4, num_classes=10)
        ldit = build_backbone("LightningDiT-XL", in_channels=32, input_size=4, num_classes=10)
    attn_and_ada = (3 * d * d + 3 * d) + (d * d + d) + (6 * d * d + 6 * d)
    mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)
    inner = int(2 * 4 * d / 3)
    swiglu = (d * 2 * inner + 2 * inner) + (inner * d + d)
    assert sum(p.numel() for p in sit.blocks[0].parameters()) == attn_and_ada + mlp + 2 * 2 * hd  # LN q/k: w+b
    assert sum(p.numel() for p in ldit.blocks[0].parameters()) == attn_and_ada + swiglu + 2 * hd  # RMS q/k: w


def test_tiny_presets_exist_and_unknown_name_lists_allowed() -> None:
    assert {"SiT-T", "LightningDiT-T"} <= set(BACKBONES)
    with pytest.raises(ValueError, match="SiT-XL"):
        build_backbone("SiT-XXL", in_channels=4, input_size=8, num_classes=10)


@pytest.mark.parametrize("name", ["SiT-T", "LightningDiT-T"])
@pytest.mark.parametrize("patch_size", [1, 2])
def test_zero_init_output_and_shapes(name: str, patch_size: int) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=3, input_size=(4, 8), num_classes=5, patch_size=patch_size, **TINY)
    x = torch.randn(2, 3, 4, 8)
    v = model(x, torch.rand(2), torch.tensor([0, 5]))  # 5 = null class
    assert v.shape == x.shape
    assert torch.equal(v, torch.zeros_like(v))  # final layer zero-init
    assert model.null_class == 5


def test_unpatchify_inverts_patch_layout() -> None:
    model = build_backbone("SiT-T", in_channels=3, input_size=(4, 6), num_classes=2, patch_size=2, **TINY)
    x = torch.randn(2, 3, 4, 6)
    p = 2
    # tokens in row-major patch order, each patch flattened as (p, p, C)
    tokens = x.reshape(2, 3, 2, p, 3, p).permute(0, 2, 4, 3, 5, 1).reshape(2, 6, p * p * 3)
    assert torch.equal(model.unpatchify(tokens), x)


def test_patch_size_must_divide_input() -> None:
    with pytest.raises(ValueError, match="patch_size"):
        build_backbone("SiT-T", in_channels=4, input_size=5, num_classes=2, patch_size=2)


@pytest.mark.parametrize("name", ["SiT-T", "LightningDiT-T"])
def test_gradient_checkpointing_changes_nothing(name: str) -> None:
    x, t, y = torch.randn(3, 2, 4, 4), torch.rand(3), torch.tensor([0, 1, 2])
    grads = []
    for flag in (False, True):
        model = randomize(build_backbone(name, in_channels=2, input_size=4, num_classes=3, **TINY),
                          std=0.05).train()
        model.grad_checkpointing = flag
        model(x, t, y).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_rope_scores_depend_only_on_offset() -> None:
    rope = Rope2D(head_dim=8, grid=(4, 5))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)
    rq = rope(q.expand(1, 1, 20, 8))[0, 0]  # (T, 8): q placed at every position
    rk = rope(k.expand(1, 1, 20, 8))[0, 0]
    scores = rq @ rk.T  # (T, T)
    torch.testing.assert_close(rq.norm(dim=1), q.norm().expand(20))  # rotations preserve norm
    idx = lambda r, c: r * 5 + c  # noqa: E731
    for (r1, c1), (r2, c2), (dr, dc) in [((0, 0), (1, 3), (2, 1)), ((1, 4), (0, 2), (2, 0)), ((0, 1), (2, 0), (1, 3))]:
        shifted = scores[idx(r1 + dr, c1 + dc), idx(r2 + dr, c2 + dc)]
        torch.testing.assert_close(scores[idx(r1, c1), idx(r2, c2)], shifted)
    assert not torch.allclose(scores[idx(0, 0), idx(0, 1)], scores[idx(0, 0), idx(1, 0)])  # rows != columns


def test_sincos_embedding_closed_form() -> None:
    emb = sincos_pos_embed_2d(8, (3, 4))  # (12, 8): [sin(r ω), cos(r ω), sin(c ω), cos(c ω)], ω = (1, 1e-2)
    r, c = 2, 3
    omega = [1.0, 10000 ** -0.5]
    expected = [math.sin(r * w) for w in omega] + [math.cos(r * w) for w in omega] + \
               [math.sin(c * w) for w in omega] + [math.cos(c * w) for w in omega]
    torch.testing.assert_close(emb[r * 4 + c], torch.tensor(expected))


def test_label_dropout_rate_and_null_class() -> None:
    model = build_backbone("SiT-T", in_channels=2, input_size=4, num_classes=7, label_dropout=0.25, **TINY)
    y = torch.randint(0, 7, (40_000,), generator=torch.Generator().manual_seed(1))
    dropped = model.drop_labels(y, torch.Generator().manual_seed(2))
    is_null = dropped == 7
    se = math.sqrt(0.25 * 0.75 / len(y))
    assert abs(is_null.float().mean().item() - 0.25) < 5 * se
    assert torch.equal(dropped[~is_null], y[~is_null])
    keep_all = build_backbone("SiT-T", in_channels=2, input_size=4, num_classes=7, label_dropout=0.0, **TINY)
    assert torch.equal(keep_all.drop_labels(y, torch.Generator().manual_seed(2)), y)
    with pytest.raises(ValueError, match="label_dropout"):
        build_backbone("SiT-T", in_channels=2, input_size=4, num_classes=7, label_dropout=1.0)
