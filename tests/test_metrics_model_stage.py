"""The model-metric stage on a real (tiny) store: tokenizer checkpoint, Parquet latents, images, domain scoring
network; and diffusion FI/FIR from a saved velocity model equal to those of the model in memory."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from raysweep.config.spec import DatasetSpec
from raysweep.data import write_latents
from raysweep.diffusion import build_backbone
from raysweep.diffusion.velocity_model import save_velocity_model
from raysweep.features.domain_net import DomainNet, save_domain_net
from raysweep.pipeline.context import TrialContext
from raysweep.pipeline.images import load_images, prepare_images
from raysweep.pipeline.model_metric_stage import run_diffusion_fisher, run_model_metrics
from raysweep.pipeline.store import Store
from raysweep.tokenizers import build_tokenizer, save_tokenizer

KEY = "tok0"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> TrialContext:
    root = tmp_path_factory.mktemp("study")
    store = Store(root)
    dataset_key = prepare_images(DatasetSpec(image_size=16, num_classes=2, train_size=24, val_size=16), store)
    torch.manual_seed(0)
    tokenizer = build_tokenizer("conv-tiny", "f4d4", 16).eval()
    save_tokenizer(tokenizer, store.tokenizer_file(KEY), "conv-tiny", "f4d4", 16)
    for split in ("train", "val"):
        images = load_images(root, dataset_key, split)
        with torch.no_grad():
            latents = tokenizer.encode(images.as_float()).mode().numpy()
        write_latents(store.latents(KEY, split), latents, images.labels, tokenizer_id=KEY)
    weights = root / "domain.pt"
    save_domain_net(DomainNet(num_classes=2), weights)
    return TrialContext(root=str(root), tracking_uri="", experiment="x", study_run_id="", dataset_key=dataset_key,
                        num_classes=2, image_size=16, feature_network="domain", feature_weights=str(weights),
                        torch_threads=1)


def test_tokenizer_metrics_run_on_the_store(ctx):
    out = run_model_metrics(ctx, KEY, ["equivariance", "distortion", "ifid"],
                            {"distortion": {"directions": 2, "neighbours": 2}, "ifid": {"k": 3}},
                            max_images=3, reference_images=6, batch_size=2)
    assert 0 < out.values["latent/equivariance/consistency"] <= 1 + 1e-6
    assert out.values["latent/fisher/dim_ratio"] == pytest.approx(4 * 4 * 4 / (3 * 16 * 16))
    assert out.values["latent/continuity/ifid"] >= 0
    assert all(np.isfinite(v) for v in out.values.values())
    assert [p.name for p in out.artifacts] == ["ifid_interpolants.png"] and out.artifacts[0].is_file()


def test_ifid_falls_back_to_the_other_validation_latents(ctx):
    store = Store(ctx.store.root)
    shutil.copytree(store.tokenizer(KEY), store.tokenizer("valonly"))
    shutil.copytree(store.latents(KEY, "val"), store.latents("valonly", "val"))
    out = run_model_metrics(ctx, "valonly", ["ifid"], {"ifid": {"k": 2}})
    assert np.isfinite(out.values["latent/continuity/ifid"]) and out.values["latent/continuity/ifid"] >= 0


def test_latent_only_metrics_are_refused(ctx):
    with pytest.raises(ValueError, match="allowed: distortion, equivariance, ifid"):
        run_model_metrics(ctx, KEY, ["fisher"], {})


def test_diffusion_fisher_from_the_saved_model_equals_the_model_in_memory(ctx):
    torch.manual_seed(0)
    build = {"name": "SiT-T", "in_channels": 4, "input_size": 4, "num_classes": 2, "patch_size": 2}
    model = build_backbone(**build).eval()
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)  # zero-initialised output: make it non-trivial
    save_velocity_model(Store(ctx.store.root).velocity_model_file("run0"), model, build)
    params = {"t_points": 4}
    loaded = run_diffusion_fisher(ctx, "run0", KEY, params)
    in_memory = run_diffusion_fisher(ctx, "run0", KEY, params, model=model)
    for key, value in in_memory.values.items():
        np.testing.assert_allclose(loaded.values[key], value, rtol=1e-6, err_msg=key)
    assert loaded.values["latent/fisher/dm_fi_t"][0] == pytest.approx(1.0, rel=0.1)  # s = −x0 at t = 0
    with np.load(loaded.artifacts[0]) as curves:
        np.testing.assert_allclose(curves["latent_fisher_dm_fi_t"][1], loaded.values["latent/fisher/dm_fi_t"])
