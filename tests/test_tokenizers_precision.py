"""Tokenizer training precision: bf16 autocast on CUDA (encoder, decoder, GAN forward), float32 on the CPU where the
step is exactly the `mixed_precision=False` step."""
from __future__ import annotations

import pytest
import torch

from raysweep.tokenizers import GanConfig, TokenizerTrainer, build_regularizer, build_tokenizer


def _trainer(device: str, mixed_precision: bool) -> tuple[TokenizerTrainer, list[torch.dtype]]:
    """A conv tokenizer with the GAN on from step 0; records the dtype of every Conv2d output."""
    torch.manual_seed(0)
    model = build_tokenizer("conv-tiny", "f2d4", 16).to(device)
    trainer = TokenizerTrainer(model, build_regularizer("baseline"), batch_size=8, seed=1,
                               gan=GanConfig(weight=0.5, start=0, channels=8), mixed_precision=mixed_precision)
    dtypes: list[torch.dtype] = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    return trainer, dtypes


def _images(device: str) -> torch.Tensor:
    return (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1).to(device)


def test_cpu_step_is_float32_and_identical_to_the_step_without_mixed_precision() -> None:
    (amp, amp_dtypes), (fp32, _) = _trainer("cpu", True), _trainer("cpu", False)
    logs = [amp.train_step(_images("cpu")) for _ in range(2)]
    assert logs == [fp32.train_step(_images("cpu")) for _ in range(2)]
    assert set(amp_dtypes) == {torch.float32}
    for key, value in fp32.model.state_dict().items():
        assert torch.equal(amp.model.state_dict()[key], value), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_step_autocasts_the_networks_to_bf16_and_stays_close_to_float32() -> None:
    (amp, amp_dtypes), (fp32, fp32_dtypes) = _trainer("cuda", True), _trainer("cuda", False)
    bf16_logs, fp32_logs = amp.train_step(_images("cuda")), fp32.train_step(_images("cuda"))
    assert set(amp_dtypes) == {torch.bfloat16} and set(fp32_dtypes) == {torch.float32}
    assert all(torch.isfinite(torch.tensor(v)) for v in bf16_logs.values())
    assert bf16_logs["l1"] == pytest.approx(fp32_logs["l1"], rel=0.05)  # same init and batch, bf16 rounding only
    assert all(p.dtype == torch.float32 for p in amp.model.parameters())  # master weights stay float32
