"""The model-metric stage on a real (tiny) store: tokenizer checkpoint, Parquet latents, images, domain scoring
network; diffusion FI/FIR from a saved velocity model equal to those of the model in memory; and a tokenizer
metric registered by a test running through the plan, the stage and MLflow with no pipeline edit."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_e2e_study import micro_study

from raysweep.config import parse_study
from raysweep.config.plan import ModelMetricJob, StudyPlan
from raysweep.config.spec import DatasetSpec
from raysweep.data import write_latents
from raysweep.diffusion import build_backbone
from raysweep.diffusion.velocity_model import save_velocity_model
from raysweep.engine.context import TrialContext
from raysweep.engine.images import load_images, prepare_images
from raysweep.engine.store import Store
from raysweep.features.domain_net import DomainNet, save_domain_net
from raysweep.metrics import METRICS, MetricInfo
from raysweep.metrics.model import ModelOutput, TokenizerInputs, TokenizerMetric
from raysweep.stages.model_metrics import run_diffusion_metrics, run_model_metric_job, run_model_metrics
from raysweep.tokenizers import build_tokenizer, load_tokenizer, save_tokenizer

KEY = "tok0"
TOY_GRID, TOY_CURVES = "recon.png", "recon_curves.npz"


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
                            {"distortion": {"directions": 2, "neighbours": 2, "reference_images": 6}, "ifid": {"k": 3}},
                            max_images=3, batch_size=2)
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


def test_latent_only_and_unknown_metrics_are_refused(ctx):
    with pytest.raises(ValueError, match="^metric 'fisher' runs on 'latents', not 'tokenizer'; allowed: distortion, "
                                         "equivariance, ifid$"):
        run_model_metrics(ctx, KEY, ["fisher"], {})
    with pytest.raises(ValueError, match="^unknown metric 'recon'; allowed: distortion, equivariance, fisher, ifid, "):
        run_model_metrics(ctx, KEY, ["recon"], {})


def test_diffusion_fisher_from_the_saved_model_equals_the_model_in_memory(ctx):
    torch.manual_seed(0)
    build = {"name": "SiT-T", "in_channels": 4, "input_size": 4, "num_classes": 2, "patch_size": 2}
    model = build_backbone(**build).eval()
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)  # zero-initialised output: make it non-trivial
    save_velocity_model(Store(ctx.store.root).velocity_model_file("run0"), model, build)
    params = {"t_points": 4}
    loaded = run_diffusion_metrics(ctx, "run0", KEY, ["velocity_fisher"], {"velocity_fisher": params})
    in_memory = run_diffusion_metrics(ctx, "run0", KEY, ["velocity_fisher"], {"velocity_fisher": params}, model=model)
    for key, value in in_memory.values.items():
        np.testing.assert_allclose(loaded.values[key], value, rtol=1e-6, err_msg=key)
    assert loaded.values["latent/fisher/dm_fi_t"][0] == pytest.approx(1.0, rel=0.1)  # s = −x0 at t = 0
    assert [p.name for p in loaded.artifacts] == ["fisher_curves.npz"]
    assert loaded.artifacts[0].parent == Store(ctx.store.root).diffusion("run0")
    with np.load(loaded.artifacts[0]) as curves:
        np.testing.assert_allclose(curves["latent_fisher_dm_fi_t"][1], loaded.values["latent/fisher/dm_fi_t"])


class ReconstructionError(TokenizerMetric):
    """A toy tokenizer metric: mean squared error of decode(encode(x)) on the first `max_images` images (through
    the standardising codec), the number of training latents, a curve and an image grid."""

    name = "recon"
    perspective = "toy"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(m) for m in ("mse", "train_latents", "mse_t", "mse_t_grid"))

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {self.key("mse"): False}

    def run(self, data: TokenizerInputs) -> ModelOutput:
        x = data.images[:data.max_images].to(data.device)
        with torch.no_grad():
            decoded = data.codec.decode_standardised(data.codec.encode_standardised(x))
        mse = self.scale * float((decoded - x).square().mean())
        train = data.latents("train")
        values = {self.key("mse"): mse, self.key("train_latents"): float(len(train)),
                  self.key("mse_t"): np.array([mse, 2 * mse]), self.key("mse_t_grid"): np.array([0.0, 1.0])}
        return ModelOutput(values, grids={TOY_GRID: decoded}, curves_file=TOY_CURVES)


def test_a_registered_tokenizer_metric_runs_through_plan_stage_and_mlflow(ctx, tmp_path: Path, monkeypatch):
    from raysweep.tracking import Tracker

    monkeypatch.setitem(METRICS, "recon", MetricInfo(ReconstructionError, "toy reconstruction error"))
    study = micro_study(tmp_path / "study")
    study["metrics"].update(names=["viv", "recon"], params={"recon": {"scale": 2.0}})
    plan = StudyPlan.from_spec(parse_study(study))
    jobs = plan.of(ModelMetricJob)
    assert [j.names for j in jobs] == [("recon",), ("recon",)]

    key = "tok-recon"  # this store's tokenizer under a key of its own, with an MLflow run
    store = Store(ctx.store.root)
    shutil.copytree(store.tokenizer(KEY), store.tokenizer(key))
    for split in ("train", "val"):
        shutil.copytree(store.latents(KEY, split), store.latents(key, split))
    ctx = dataclasses.replace(ctx, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="recon-study")
    tracker = Tracker(ctx.tracking_uri, ctx.experiment)
    run_id = tracker.open_run(key, "tokenizer", key)
    store.mark_done(store.tokenizer(key), {"run_id": run_id})
    job = ModelMetricJob.of(jobs[0].id, key, jobs[0].names, study["metrics"]["params"])
    run_model_metric_job(ctx, job, study["metrics"]["params"])

    tokenizer = load_tokenizer(store.tokenizer_file(key)).eval()
    x = load_images(ctx.root, ctx.dataset_key, "val").as_float()[:64]
    with torch.no_grad():  # standardising then unstandardising is the identity: the plain round trip
        expected = 2.0 * float((tokenizer.decode(tokenizer.encode(x).mode()) - x).square().mean())
    run = tracker.client.get_run(run_id)
    metrics = Tracker.metrics_of(run)
    assert metrics["latent/toy/mse"] == pytest.approx(expected, rel=1e-4)
    assert metrics["latent/toy/train_latents"] == 24  # the fixture's train_size: read lazily through the stage
    figures = {a.path for a in tracker.client.list_artifacts(run_id, "figures")}
    assert {f"figures/{TOY_GRID}", f"figures/{TOY_CURVES}", "figures/latent_toy_mse_t.png"} <= figures
    with np.load(store.tokenizer(key) / "model_metrics" / TOY_CURVES) as curves:
        np.testing.assert_allclose(curves["latent_toy_mse_t"], [[0.0, 1.0], [expected, 2 * expected]], rtol=1e-4)
    marker = json.loads((store.marker(job) / "result.json").read_text())
    assert marker["values"] == sorted(ReconstructionError().keys) and marker["run_id"] == run_id
    assert marker["metrics"]["recon"]["key"] == job.metrics[0].key
    recorded = marker["metrics"]["recon"]["inputs"]
    assert recorded == dict(job.metrics[0].inputs) and (recorded["upstream"], recorded["version"]) == (key, 1)
