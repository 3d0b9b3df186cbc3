"""gFID validity: the domain network a study trains (the benchmark's settings, on MNIST digits) rates blurred real
digits far from real ones, and the evaluation card records the check."""
from __future__ import annotations

from pathlib import Path

import pytest

from raysweep.config.spec import ReferenceSpec
from raysweep.data import mnist_splits
from raysweep.features import generation_card, resolve_feature_network, save_domain_net, train_domain_net


@pytest.mark.e2e
def test_the_domain_network_sees_blur_and_the_card_says_so(tmp_path: Path) -> None:
    spec = ReferenceSpec(train_steps=200)  # experiments/benchmark.yaml's reference block
    train, val = mnist_splits(2000, 1000, size=16)  # halves of 500 keep the bias of a 128-d FD small
    model, stats = train_domain_net(train.as_float(), train.labels, steps=spec.train_steps,
                                    batch_size=spec.batch_size, lr=spec.lr, seed=0, val=(val.as_float(), val.labels))
    assert stats["val_accuracy"] > 0.7
    # the benchmark's network (4,000 digits, halves of its 1,000 held out): 50.2 vs 0.53
    assert stats["check_fd_blurred"] > 20 * stats["check_fd_real_halves"]
    path = tmp_path / "domain.pt"
    save_domain_net(model, path, meta=stats)
    network = resolve_feature_network("domain", weights_path=path)
    card = generation_card(network, [network], "data", "train", 2000, 1000, "euler", 20, [1.0], None, 1.0, 0,
                           "float32", "round-robin")
    assert card.feature_check.startswith("FD(blur sigma=1 of real, real) = ")
    assert f"{stats['check_fd_blurred']:.4g}" in card.feature_check
