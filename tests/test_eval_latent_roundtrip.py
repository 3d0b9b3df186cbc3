"""Latent round trip of a diffusion trial: Parquet latents -> standardise -> de-standardise -> decode equals the
tokenizer's plain reconstruction, and stale normalisation or foreign latents are refused before decoding."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from raysweep.data import write_latents
from raysweep.data.latents import MEAN_KEY, LatentDataError
from raysweep.engine.store import Store
from raysweep.stages.diffusion import TOKENIZER_KEY, load_latents
from raysweep.stages.generation import decode_standardised
from raysweep.tokenizers import build_tokenizer

KEY = "tok-a"


@pytest.fixture
def encoded(tmp_path: Path) -> tuple[Store, torch.nn.Module, torch.Tensor, Path]:
    torch.manual_seed(0)
    tokenizer = build_tokenizer("conv-tiny", "f2d4", 16).eval()
    images = torch.rand(12, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = tokenizer.encode(images).mode()  # (12, 4, 8, 8), un-normalised
    store = Store(tmp_path)
    [path] = write_latents(store.latents(KEY, "train"), latents.numpy(), torch.arange(12) % 3, tokenizer_id="a",
                           extra_metadata={TOKENIZER_KEY: KEY})
    return store, tokenizer, latents, path


def test_standardise_then_decode_equals_plain_reconstruction(
        encoded: tuple[Store, torch.nn.Module, torch.Tensor, Path]) -> None:
    store, tokenizer, latents, _ = encoded
    batch, meta = load_latents(store, KEY, "train")
    z = torch.from_numpy(meta.standardise(batch.latent))
    per_channel = z.transpose(0, 1).reshape(4, -1)  # (C, N*H*W)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(1, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    with torch.no_grad():
        plain = tokenizer.decode(latents)
    torch.testing.assert_close(decode_standardised(tokenizer, z, meta, batch_size=5), plain, rtol=1e-4, atol=1e-5)


def test_stale_normalisation_is_detected_before_decoding(
        encoded: tuple[Store, torch.nn.Module, torch.Tensor, Path]) -> None:
    store, _, _, path = encoded
    table = pq.read_table(path)
    metadata = dict(table.schema.metadata)
    mean = json.loads(metadata[MEAN_KEY.encode()])
    metadata[MEAN_KEY.encode()] = json.dumps([m + 0.5 for m in mean]).encode()  # edited stats, old hash
    pq.write_table(table.replace_schema_metadata(metadata), path)
    with pytest.raises(LatentDataError, match="stale or edited normalisation"):
        load_latents(store, KEY, "train")


def test_latents_of_another_tokenizer_are_refused(encoded: tuple[Store, torch.nn.Module, torch.Tensor, Path]) -> None:
    store, _, latents, _ = encoded
    write_latents(store.latents("tok-b", "train"), latents.numpy(), torch.arange(12) % 3, tokenizer_id="a",
                  extra_metadata={TOKENIZER_KEY: KEY})
    with pytest.raises(LatentDataError, match="'tok-a', expected 'tok-b': stale latents"):
        load_latents(store, "tok-b", "train")
