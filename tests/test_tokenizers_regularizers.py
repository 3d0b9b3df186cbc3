"""Regularizers: registry and params validation, finiteness, gradient to the encoder, neutrality where the definition
says so, closed forms of the building blocks, and one trainer step each."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from raysweep.tokenizers import REGULARIZERS, TokenizerTrainer, build_regularizer, build_tokenizer, validate_params
from raysweep.tokenizers.regularizers import RegContext, Regularizer
from raysweep.tokenizers.regularizers.eq import IDENTITY, EqTransform
from raysweep.tokenizers.regularizers.lcr import local_correlation
from raysweep.tokenizers.regularizers.vf import mcos_loss, mdms_loss

FEATURE_DIM = 12
# Regularizer params that make every random draw take effect (forced transform / mask), and small projectors.
FORCED: dict[str, dict[str, Any]] = {"eq": {"p": 1.0}, "lmr": {"mask_probs": [0.0, 0.0, 1.0]}, "repa": {"hidden": 16},
                                     "mae": {"max_ratio": 0.9}}
TRANSFORMER_ONLY = {"mae"}
ARCH_REG = [(arch, name) for arch in ("conv-tiny", "vit-tiny") for name in sorted(REGULARIZERS)
            if arch.startswith("vit") or name not in TRANSFORMER_ONLY]


def input_layer(model: torch.nn.Module) -> torch.Tensor:
    """The encoder's first weight (conv_in / patch embedding): gradient there has crossed the whole encoder."""
    return model.patch_embed.weight if hasattr(model, "patch_embed") else model.encoder[0].weight


def feature_net() -> torch.nn.Conv2d:
    """A frozen random conv with stride 4 standing in for a foundation model: images -> (B, 12, H/4, W/4)."""
    net = torch.nn.Conv2d(3, FEATURE_DIM, 4, stride=4)
    torch.nn.init.normal_(net.weight, generator=torch.Generator().manual_seed(7))
    return net.requires_grad_(False)


def make_context(name: str, params: dict[str, Any] | None = None, latent: str = "f4d4", seed: int = 0,
                 arch: str = "conv-tiny") -> tuple[Regularizer[Any], RegContext]:
    """The regularizer bound to a tiny tokenizer and the context of one batch, built as the trainer does."""
    torch.manual_seed(seed)
    model = build_tokenizer(arch, latent, 32)
    reg = build_regularizer(name, FORCED.get(name, {}) if params is None else params)
    reg.bind(model.latent_channels, FEATURE_DIM if reg.needs_features else None)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    generator = torch.Generator().manual_seed(seed)
    posterior = model.encode(images)
    z = posterior.sample(generator)
    recon_loss = (model.decode(z) - images).abs().mean()
    features = feature_net()(images) if reg.needs_features else None
    return reg, RegContext(images, posterior, z, model, features, generator, recon_loss)


@pytest.mark.parametrize("arch, name", ARCH_REG)
def test_loss_is_finite_and_reaches_the_encoder(arch: str, name: str) -> None:
    reg, ctx = make_context(name, arch=arch)
    loss, logs = reg.loss(ctx)
    assert loss.shape == () and torch.isfinite(loss)
    assert all(isinstance(v, float) and np.isfinite(v) for v in logs.values())
    if name == "baseline":
        assert loss.item() == 0.0 and not loss.requires_grad
        return
    loss.backward()
    first = input_layer(ctx.model)
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("arch, name", ARCH_REG)
def test_one_trainer_step(arch: str, name: str) -> None:
    torch.manual_seed(0)
    model = build_tokenizer(arch, "f8d8", 32)
    reg = build_regularizer(name, FORCED.get(name, {}))
    trainer = TokenizerTrainer(model, reg, lr=1e-3, batch_size=4, seed=0, feature_fn=feature_net())
    before = [p.detach().clone() for p in model.parameters()]
    logs = trainer.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert trainer.step == 1
    assert {"loss", "l1", "kl", "reg"} <= logs.keys() and all(np.isfinite(v) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("name", ["vf", "mcos", "repa"])
def test_feature_regularizers_refuse_to_train_without_features(name: str) -> None:
    with pytest.raises(ValueError, match="feature"):
        TokenizerTrainer(build_tokenizer("conv-tiny", "f4d4", 32), build_regularizer(name, FORCED.get(name, {})))


# --- registry and params ------------------------------------------------------------------------------------------

def test_unknown_regularizer_lists_the_registry() -> None:
    with pytest.raises(ValueError, match="unknown regularizer 'nope'") as err:
        build_regularizer("nope", {})
    assert all(name in str(err.value) for name in REGULARIZERS)


def test_unknown_param_lists_the_allowed_params() -> None:
    with pytest.raises(ValueError, match="thresh.*allowed params.*weight=0.02.*threshold=0.75"):
        build_regularizer("lcr", {"thresh": 0.5})


@pytest.mark.parametrize("name, params, field", [
    ("lcr", {"threshold": 1.5}, "threshold"), ("eq", {"p": -0.1}, "p"), ("eq", {"transforms": ["shear"]}, "transforms"),
    ("lmr", {"mask_probs": [0.5, 0.5, 0.5]}, "mask_probs"), ("vf", {"mcos_margin": -1}, "mcos_margin"),
    ("repa", {"hidden": 0}, "hidden"), ("baseline", {"weight": 1.0}, "weight"),
    ("repa", {"encoder": "dinov9"}, "encoder.*unknown feature network 'dinov9'; allowed:.*dinov2-b"),
    ("mae", {"max_ratio": 1.0}, "max_ratio"),
])
def test_out_of_range_params_raise(name: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"regularizer '{name}'.*{field}.*allowed params") as err:
        validate_params(name, params)
    assert not isinstance(err.value, ValidationError)


def test_defaults_follow_the_papers() -> None:
    lcr, lmr = validate_params("lcr", {}), validate_params("lmr", {})
    assert (lcr.weight, lcr.threshold) == (0.02, 0.75)  # Table 1: w0.02-th0.75
    assert lmr.mask_probs == (0.1, 0.1, 0.1)  # Table 1: p0.1-0.10-0.10
    vf = validate_params("vf", {})
    assert (vf.mcos_margin, vf.mdms_margin) == (0.5, 0.25)
    eq = validate_params("eq", {})
    assert (eq.p, eq.scale_min, eq.transforms) == (0.5, 0.25, ("scale", "rotate"))


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_search_space_names_real_params_with_valid_values(name: str) -> None:
    cls = REGULARIZERS[name]
    assert cls.name == name
    for param, domain in cls.search_space.items():
        assert param in cls.Params.model_fields
        ((kind, values),) = domain.items()
        for value in (values if kind in ("choice", "grid") else values[:2]):
            validate_params(name, {param: value})


# --- neutrality and closed forms ----------------------------------------------------------------------------------

def test_baseline_is_exactly_zero() -> None:
    reg, ctx = make_context("baseline")
    assert reg.loss(ctx)[0].item() == 0.0


def test_eq_identity_is_neutral() -> None:
    reg, ctx = make_context("eq", {"p": 0.0})
    loss, logs = reg.loss(ctx)
    assert loss.item() == 0.0 and logs["eq_active"] == 0.0
    plain = (ctx.model.decode(ctx.z) - ctx.images).abs().mean()
    assert torch.equal(reg.transformed_recon(ctx, IDENTITY), plain)


@pytest.mark.parametrize("transform", [EqTransform("rotate", 1), EqTransform("rotate", 3), EqTransform("flip"),
                                       EqTransform("scale", 0.5)])
def test_eq_transform_is_applied_to_latent_and_image_alike(transform: EqTransform) -> None:
    """f1 latents equal to the image and an identity decoder are exactly equivariant: zero loss if and only if the
    latent and the image get the same transform."""
    reg, ctx = make_context("eq", latent="f1d3")
    ctx.z = ctx.images.clone()
    ctx.model.decode = lambda z: z  # type: ignore[method-assign]
    assert reg.transformed_recon(ctx, transform).item() == 0.0
    ctx.model.decode = lambda z: torch.roll(z, 1, dims=-1)  # type: ignore[method-assign]
    assert reg.transformed_recon(ctx, transform).item() > 0


def test_eq_draws_are_seeded_and_in_range() -> None:
    reg = build_regularizer("eq", {"p": 0.5, "transforms": ["scale", "rotate", "flip"], "scale_min": 0.25})
    draws = [reg.sample_transform(torch.Generator().manual_seed(s)) for s in range(400)]
    again = [reg.sample_transform(torch.Generator().manual_seed(s)) for s in range(400)]
    assert draws == again
    kinds = [d.kind for d in draws]
    assert 0.4 < kinds.count("identity") / len(kinds) < 0.6
    assert {"scale", "rotate", "flip"} <= set(kinds)
    assert all(0.25 <= d.amount < 1 for d in draws if d.kind == "scale")
    assert {d.amount for d in draws if d.kind == "rotate"} == {1.0, 2.0, 3.0}


def pearson_windows_reference(z: np.ndarray) -> float:
    """Independent loop version of the LCR statistic."""
    z = (z - z.mean(axis=(0, 2, 3), keepdims=True)) / (z.std(axis=(0, 2, 3), ddof=1, keepdims=True) + 1e-6)
    values = []
    b, _, h, w = z.shape
    for n in range(b):
        for i in range(0, h, 2):
            for j in range(0, w, 2):
                vecs = [z[n, :, i + di, j + dj] for di in (0, 1) for dj in (0, 1)]
                values += [np.corrcoef(vecs[a], vecs[c])[0, 1] for a in range(4) for c in range(a + 1, 4)]
    return float(np.mean(values))


def test_local_correlation_matches_reference() -> None:
    z = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert local_correlation(z).item() == pytest.approx(pearson_windows_reference(z.numpy()), abs=1e-6)


def test_lcr_is_zero_once_correlation_reaches_threshold() -> None:
    reg, ctx = make_context("lcr", {"threshold": 0.75, "adaptive": False})
    smooth = torch.randn(4, 4, 1, 1).expand(4, 4, 8, 8)  # spatially constant per image: r = 1
    ctx.posterior.mean = smooth.clone().requires_grad_()
    loss, logs = reg.loss(ctx)
    assert logs["lcr_r"] == pytest.approx(1.0, abs=1e-5) and loss.item() == 0.0
    ctx.posterior.mean = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    loss, logs = reg.loss(ctx)
    assert abs(logs["lcr_r"]) < 0.2 and loss.item() == pytest.approx(0.02 * (0.75 - logs["lcr_r"]), rel=1e-5)


def test_lcr_rejects_odd_grids() -> None:
    with pytest.raises(ValueError, match="even latent grid"):
        local_correlation(torch.randn(1, 4, 3, 4))


def test_mcos_and_mdms_match_loops() -> None:
    g = torch.Generator().manual_seed(0)
    z, f = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    mcos = np.mean([max(0.0, 1 - 0.5 - cos(z[b, i], f[b, i])) for b in range(2) for i in range(5)])
    mdms = np.mean([max(0.0, abs(cos(z[b, i], z[b, j]) - cos(f[b, i], f[b, j])) - 0.25)
                    for b in range(2) for i in range(5) for j in range(5)])
    assert mcos_loss(z, f, 0.5).item() == pytest.approx(mcos, abs=1e-6)
    assert mdms_loss(z, f, 0.25).item() == pytest.approx(mdms, abs=1e-6)


@pytest.mark.parametrize("name", ["vf", "mcos", "mdms"])
def test_alignment_is_zero_when_projected_latents_match_features(name: str) -> None:
    reg, ctx = make_context(name, {"adaptive": False})
    with torch.no_grad():  # features that the projected latent already matches, up to a small perturbation
        target = reg.projector(ctx.z)
        noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
        ctx.features = target + 0.01 * target.std() * noise
    loss, logs = reg.loss(ctx)
    assert loss.item() == 0.0
    ctx.features = -ctx.features  # anti-aligned tokens: cos = -1 everywhere, but the same distance matrix
    loss, logs = reg.loss(ctx)
    assert ("mcos" not in logs or logs["mcos"] == pytest.approx(1.5, abs=1e-3))
    assert ("mdms" not in logs or logs["mdms"] == 0.0)


def test_features_are_resized_to_the_latent_grid() -> None:
    reg, ctx = make_context("mcos", {"adaptive": False}, latent="f8d8")  # features 8x8, latent 4x4
    with torch.no_grad():
        target = reg.projector(ctx.z)  # (B, D, 4, 4)
        ctx.features = F.interpolate(target, scale_factor=2, mode="nearest")  # pools back exactly
    assert reg.loss(ctx)[0].item() == 0.0


def test_adaptive_weight_matches_gradient_norm_ratio() -> None:
    reg, ctx = make_context("mcos", {"adaptive": True, "weight": 0.1})
    loss, logs = reg.loss(ctx)
    raw = logs["mcos"]
    layer = ctx.model.encoder_output_layer
    g_rec = torch.autograd.grad(ctx.recon_loss, layer, retain_graph=True)[0].norm()
    g_reg = torch.autograd.grad(loss / logs["vf_weight"], layer, retain_graph=True)[0].norm()
    assert logs["vf_weight"] == pytest.approx(0.1 * float(g_rec / (g_reg + 1e-4)), rel=1e-4)
    assert loss.item() == pytest.approx(logs["vf_weight"] * raw, rel=1e-5)


def test_repa_is_negative_weighted_cosine() -> None:
    reg, ctx = make_context("repa", {"hidden": 8, "weight": 0.5})
    with torch.no_grad():
        ctx.features = reg.projector(ctx.z)
    loss, logs = reg.loss(ctx)
    assert logs["repa_cos"] == pytest.approx(1.0, abs=1e-5) and loss.item() == pytest.approx(-0.5, abs=1e-5)


def test_lmr_unmasked_batches_are_neutral_and_masks_have_the_drawn_ratio() -> None:
    reg, ctx = make_context("lmr", {"mask_probs": [0.0, 0.0, 0.0]})
    loss, logs = reg.loss(ctx)
    assert loss.item() == 0.0 and logs["lmr_ratio"] == 0.0
    for probs, ratio in (([1.0, 0.0, 0.0], 0.25), ([0.0, 1.0, 0.0], 0.5), ([0.0, 0.0, 1.0], 0.75)):
        reg = build_regularizer("lmr", {"mask_probs": probs})
        mask = reg.sample_mask((8, 8), torch.Generator().manual_seed(0))
        assert mask is not None and mask.shape == (8, 8) and mask.float().mean().item() == ratio


def test_lmr_masks_with_the_token_and_reconstructs_the_image() -> None:
    reg, ctx = make_context("lmr")
    seen = {}

    def decode(z: torch.Tensor) -> torch.Tensor:
        seen["z"] = z
        return ctx.images + 0.5

    ctx.model.decode = decode  # type: ignore[method-assign]
    loss, logs = reg.loss(ctx)
    assert loss.item() == pytest.approx(0.5) and logs["lmr_ratio"] == 0.75
    token_positions = (seen["z"] == reg.mask_token).all(dim=1)  # (B, h, w)
    assert token_positions.float().mean().item() == 0.75
    assert torch.equal(seen["z"][~token_positions.unsqueeze(1).expand_as(ctx.z)],
                       ctx.z[~token_positions.unsqueeze(1).expand_as(ctx.z)])


def test_mae_needs_a_transformer_tokenizer() -> None:
    reg, ctx = make_context("mae")
    with pytest.raises(ValueError, match="'mae'.*transformer tokenizer.*ConvVAE"):
        reg.loss(ctx)


def test_mae_zero_ratio_is_neutral_and_masks_have_the_drawn_count() -> None:
    reg, ctx = make_context("mae", {"max_ratio": 0.0}, arch="vit-tiny")
    loss, logs = reg.loss(ctx)
    assert loss.item() == 0.0 and logs["mae_ratio"] == 0.0
    reg = build_regularizer("mae", {"max_ratio": 0.5})
    ratios = []
    for seed in range(200):
        mask = reg.sample_mask(3, 64, torch.Generator().manual_seed(seed))
        counts = {0} if mask is None else set(mask.sum(1).tolist())
        assert len(counts) == 1  # the same number of masked tokens in every image
        ratios.append(counts.pop() / 64)
    assert max(ratios) <= 0.5 + 1 / 128 and 0.2 < float(np.mean(ratios)) < 0.3  # ρ ~ U(0, 0.5): mean 0.25


def test_mae_mask_token_replaces_exactly_the_masked_patches() -> None:
    """No mask is the plain encoder; a full mask makes the posterior independent of the image."""
    torch.manual_seed(0)
    model = build_tokenizer("vit-tiny", "f8d8", 32)
    x, y = torch.rand(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    none, full = torch.zeros(2, 16, dtype=torch.bool), torch.ones(2, 16, dtype=torch.bool)
    torch.testing.assert_close(model.encode_masked(x, none).mean, model.encode(x).mean)
    torch.testing.assert_close(model.encode_masked(x, full).mean, model.encode_masked(y, full).mean)
    assert not torch.allclose(model.encode(x).mean, model.encode(y).mean)
