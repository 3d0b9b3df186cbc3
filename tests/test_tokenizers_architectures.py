"""Latent configs, presets and the conv VAE: parsing, shapes, posterior maths, save/load round trip."""
from __future__ import annotations

import math

import pytest
import torch

from raysweep.tokenizers import (
    ARCHITECTURES,
    DiagonalGaussian,
    LatentConfig,
    build_tokenizer,
    load_tokenizer,
    parse_latent_config,
    save_tokenizer,
)


@pytest.mark.parametrize("text, down, channels", [("f16d32", 16, 32), ("f4d4", 4, 4), ("f1d3", 1, 3)])
def test_parse_latent_config(text: str, down: int, channels: int) -> None:
    config = parse_latent_config(text)
    assert config == LatentConfig(down, channels)
    assert config.name == text
    assert config.levels == int(math.log2(down))
    assert parse_latent_config(config) is config


@pytest.mark.parametrize("bad", ["f16", "d32", "f16d", "F16D32", "f16d32x", " f16d32", "f12d32", "f0d4", "f4d0", ""])
def test_parse_latent_config_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="f\\{down\\}d\\{channels\\}") as err:
        parse_latent_config(bad)
    assert bad in str(err.value) or bad == ""


def test_latent_shape() -> None:
    assert LatentConfig(8, 16).latent_shape(256) == (16, 32, 32)
    with pytest.raises(ValueError, match="image size 36 .* 8"):
        LatentConfig(8, 16).latent_shape(36)


@pytest.mark.parametrize("latent", ["f4d4", "f8d8", "f16d32"])
def test_conv_tiny_maps_to_latent_shape(latent: str) -> None:
    torch.manual_seed(0)
    model = build_tokenizer("conv-tiny", latent, 32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    recon, posterior = model(x)
    c, h, w = parse_latent_config(latent).latent_shape(32)
    assert posterior.mean.shape == posterior.logvar.shape == (2, c, h, w)
    assert recon.shape == x.shape
    assert torch.isfinite(recon).all()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("latent", ["f4d4", "f8d8", "f16d32"])
def test_every_preset_builds_with_right_shapes(arch: str, latent: str) -> None:
    """Shape propagation only (meta tensors: no memory, no compute), so the large presets stay cheap."""
    with torch.device("meta"):
        model = build_tokenizer(arch, latent, 32)
        recon, posterior = model(torch.empty(2, 3, 32, 32))
    assert posterior.mean.shape == (2, *parse_latent_config(latent).latent_shape(32))
    assert recon.shape == (2, 3, 32, 32)
    assert model.latent_channels == parse_latent_config(latent).channels
    assert model.encoder_output_layer.shape[0] == 2 * model.latent_channels
    down = parse_latent_config(latent).down
    assert model.decoder_output_layer.shape[0] in (3, 3 * down * down)  # conv_out to RGB / ViT patch pixels


def test_unknown_architecture_lists_presets() -> None:
    with pytest.raises(ValueError, match="conv-ldm.*conv-small.*conv-tiny.*vit-base.*vit-small.*vit-tiny"):
        build_tokenizer("vit-huge", "f4d4", 32)


def test_image_size_must_fit_downsampling() -> None:
    with pytest.raises(ValueError, match="f16d32"):
        build_tokenizer("conv-tiny", "f16d32", 40)


def test_diagonal_gaussian_kl_and_sampling_match_closed_forms() -> None:
    torch.manual_seed(0)
    mean, logvar = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4) * 0.5
    posterior = DiagonalGaussian(torch.cat([mean, logvar], dim=1))
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean, (0.5 * logvar).exp()),
                                                 torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1).mean()
    torch.testing.assert_close(posterior.kl(), expected)
    assert torch.equal(posterior.mode(), mean)
    a = posterior.sample(torch.Generator().manual_seed(3))
    b = posterior.sample(torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    eps = (a - mean) / (0.5 * logvar).exp()
    torch.testing.assert_close(eps, torch.randn(mean.shape, generator=torch.Generator().manual_seed(3)))


def test_save_load_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_tokenizer("conv-tiny", "f8d8", 32).eval()
    save_tokenizer(model, tmp_path / "tok" / "tokenizer.pt", "conv-tiny", "f8d8", 32)
    blob = torch.load(tmp_path / "tok" / "tokenizer.pt", weights_only=True)
    assert blob["architecture"] == "conv-tiny" and blob["latent"] == "f8d8" and blob["image_size"] == 32
    loaded = load_tokenizer(tmp_path / "tok" / "tokenizer.pt").eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x, sample=False)[0], loaded(x, sample=False)[0])


def test_vit_decoder_unpatchifies_row_major() -> None:
    """A decoder whose pixel head copies the token's first latent channel into every pixel of its patch: the image
    is the latent grid upsampled by nearest neighbour, so patches land at their own grid position."""
    torch.manual_seed(0)
    model = build_tokenizer("vit-tiny", "f4d4", 16)
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        zeroed = [layer for block in model.dec_blocks for layer in (block.attn.proj, block.mlp.fc2)]
        for layer in (*zeroed, model.from_latent, model.to_pixels):  # blocks: identity (zero residual branches)
            layer.weight.zero_()
            layer.bias.zero_()
        model.dec_norm = torch.nn.Identity()
        model.from_latent.weight[0, 0] = 1.0  # token feature 0 = latent channel 0 (+ its position embedding)
        model.to_pixels.weight[:, 0] = 1.0  # every pixel of the patch = token feature 0
        pos0 = model.positions((4, 4), z)[0, :, 0].reshape(4, 4)  # (4, 4): position embedding feature 0
        out = model.decode(z)
    expected = (z[0, 0] + pos0).repeat_interleave(4, 0).repeat_interleave(4, 1)
    assert out.shape == (1, 3, 16, 16)
    torch.testing.assert_close(out[0, 1], expected)
