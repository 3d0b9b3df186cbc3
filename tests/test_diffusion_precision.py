"""The evaluation card names the precision the samples were actually drawn in: the dtype the backbone computed in
during the stage's sampling, with the ODE state kept float32 (bf16 autocast on CUDA, float32 on CPU)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from raysweep.config.spec import DatasetSpec, EvaluationSpec
from raysweep.diffusion import build_backbone
from raysweep.diffusion.precision import sampling_precision
from raysweep.engine.images import prepare_images
from raysweep.engine.store import Store
from raysweep.features import resolve_feature_network, save_domain_net
from raysweep.features.domain_net import DomainNet
from raysweep.stages.generation import run_card, sample_latents
from raysweep.stages.scoring import GenerationScorer

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _backbone_dtypes(device: torch.device) -> tuple[set[torch.dtype], torch.dtype]:
    """(dtypes the backbone's first linear layer produced, dtype of the samples) in the stage's guided sampling."""
    torch.manual_seed(0)
    model = build_backbone("SiT-T", in_channels=4, input_size=8, num_classes=4, patch_size=2).to(device).eval()
    linear = next(m for m in model.blocks[0].modules() if isinstance(m, nn.Linear))
    seen: set[torch.dtype] = set()
    linear.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    noise = torch.randn(6, 4, 8, 8, device=device)
    labels = torch.arange(6, device=device) % 4
    result = sample_latents(model, noise, labels, 2.0, EvaluationSpec(sampling_steps=3, num_samples=16),
                            record_trajectory=True)
    assert result.trajectory is not None and result.trajectory.dtype == result.x1.dtype
    return seen, result.x1.dtype


@pytest.mark.parametrize("device", DEVICES)
def test_card_precision_is_the_dtype_sampling_computed_in(tmp_path: Path, device: str) -> None:
    dev = torch.device(device)
    seen, sample_dtype = _backbone_dtypes(dev)
    assert len(seen) == 1 and sample_dtype == torch.float32  # one compute dtype; the ODE state stays float32
    store = Store(tmp_path)
    key = prepare_images(DatasetSpec(image_size=16, num_classes=4, train_size=24, val_size=24), store)
    save_domain_net(DomainNet(4, width=8, feature_dim=8), tmp_path / "domain.pt")
    scorer = GenerationScorer(store, key, resolve_feature_network("domain", weights_path=tmp_path / "domain.pt"),
                              num_samples=24, seed=0)
    card = run_card(scorer, key, EvaluationSpec(num_samples=16), seed=0, device=dev)
    assert card.precision.split(" ")[0] == str(seen.pop()).removeprefix("torch.")
    if device == "cpu":
        assert card.precision == "float32"  # the CPU path and its card hash are unchanged


def test_cuda_runs_never_share_a_card_with_float32_runs() -> None:
    """Checked without a GPU: what a CUDA worker would write on its card."""
    gpu = sampling_precision(torch.device("cuda"))
    assert gpu.startswith("bfloat16 autocast") and "float32 ODE state, decoding and features" in gpu
    assert gpu != sampling_precision(torch.device("cpu"))
