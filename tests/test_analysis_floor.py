"""The real floor on quickstart-sized data, through the scorer's own path (torch-fidelity extractor of a trained
domain network, cached-reference FD): FD(val, train) < rFID of a blurred tokenizer (blur σ = 1 of the val images,
scored as reconstructions against their own split), and KID agrees where FD's bias could blur the order."""
from __future__ import annotations

from pathlib import Path

import torch

from raysweep.data.mnist import mnist_splits
from raysweep.features import extract_features, resolve_feature_network, save_domain_net, train_domain_net
from raysweep.features.domain_train import gaussian_blur
from raysweep.features.frechet import feature_frechet_distance
from raysweep.features.sample_bias import kid


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def test_floor_is_below_the_rfid_of_a_blurred_tokenizer(tmp_path: Path) -> None:
    train, val = mnist_splits(1000, 300, size=16, seed=0)
    model, _ = train_domain_net(train.as_float(), train.labels, steps=40, seed=0, val=(val.as_float(), val.labels))
    save_domain_net(model, tmp_path / "domain.pt")
    spec = resolve_feature_network("domain", weights_path=tmp_path / "domain.pt")

    def features(images: torch.Tensor) -> torch.Tensor:
        return extract_features(images, spec)[spec.layers.fid]

    f_train, f_val = features(torch.from_numpy(train.images)), features(torch.from_numpy(val.images))
    f_blurred = features(_uint8(gaussian_blur(val.as_float(), 1.0)))
    floor = feature_frechet_distance(f_val, f_train)
    rfid = feature_frechet_distance(f_blurred, f_val)
    assert 0 < floor < rfid / 5
    assert kid(f_val, f_train)[0] < kid(f_blurred, f_val)[0] / 5
