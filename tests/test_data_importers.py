"""`raysweep latents import`: each format round-trips into the latent Parquet contract (read back with the
library reader, compared exactly), and files it cannot read unambiguously are one line naming what was found."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from raysweep.cli import main
from raysweep.data import read_latents
from raysweep.data.importers import ROLES
from raysweep.data.latents import latent_files

N, SHAPE = 10, (3, 4, 2)


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"latents": rng.normal(size=(N, *SHAPE)).astype(np.float32), "labels": rng.integers(0, 4, N),
            "masks": rng.integers(0, 2, (N, 4, 2)).astype(np.uint8), "ids": rng.permutation(1000)[:N]}


def _torch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def _npz(path: Path, a: dict[str, np.ndarray]) -> list[str]:
    np.savez(path.with_suffix(".npz"), z=a["latents"], y=a["labels"], fg_mask=a["masks"], sample_ids=a["ids"])
    return [str(path.with_suffix(".npz"))]


def _npy(path: Path, a: dict[str, np.ndarray]) -> list[str]:  # one array per file: labels and masks beside it
    for name in ("latents", "labels", "masks"):
        np.save(path.parent / f"{name}.npy", a[name])
    return [str(path.parent / "latents.npy"), "--labels", str(path.parent / "labels.npy"),
            "--masks", str(path.parent / "masks.npy")]


def _safetensors(path: Path, a: dict[str, np.ndarray]) -> list[str]:
    save_file({"Latents": torch.from_numpy(a["latents"]), "targets": torch.from_numpy(a["labels"]),
               "mask": torch.from_numpy(a["masks"]).bool()}, path.with_suffix(".safetensors"))
    return [str(path.with_suffix(".safetensors"))]


def _torch_dict(path: Path, a: dict[str, np.ndarray]) -> list[str]:
    torch.save({"latent": torch.from_numpy(a["latents"]), "class_labels": torch.from_numpy(a["labels"]),
                "masks": torch.from_numpy(a["masks"]), "ids": torch.from_numpy(a["ids"])}, path.with_suffix(".pt"))
    return [str(path.with_suffix(".pt"))]


def _torch_tensor(path: Path, a: dict[str, np.ndarray]) -> list[str]:  # a bare tensor; labels from a .pth dict
    torch.save(torch.from_numpy(a["latents"]), path.with_suffix(".pt"))
    torch.save({"y": torch.from_numpy(a["labels"])}, path.parent / "labels.pth")
    return [str(path.with_suffix(".pt")), "--labels", str(path.parent / "labels.pth")]


@pytest.mark.parametrize(("write", "with_masks", "with_ids"), [
    (_npz, True, True), (_npy, True, False), (_safetensors, True, False), (_torch_dict, True, True),
    (_torch_tensor, False, False)])
def test_round_trip(write: Callable[[Path, dict[str, np.ndarray]], list[str]], with_masks: bool, with_ids: bool,
                    arrays: dict[str, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = write(tmp_path / "src", arrays)
    assert main(["latents", "import", args[0], str(tmp_path / "out"), *args[1:]]) == 0, capsys.readouterr().err
    assert f"{N} latents of shape {list(SHAPE)}" in capsys.readouterr().out
    batch, meta = read_latents(latent_files(tmp_path / "out"))
    np.testing.assert_array_equal(batch.latent, arrays["latents"])
    np.testing.assert_array_equal(batch.label, arrays["labels"])
    np.testing.assert_array_equal(batch.sample_id, arrays["ids"] if with_ids else np.arange(N))
    if with_masks:
        np.testing.assert_array_equal(batch.fg_mask, arrays["masks"])
    else:
        assert batch.fg_mask is None
    assert meta.shape == SHAPE and meta.tokenizer_id == Path(args[0]).stem
    z = arrays["latents"].astype(np.float64)
    np.testing.assert_allclose(meta.channel_mean, z.mean(axis=(0, 2, 3)), rtol=1e-12)


def test_bfloat16_safetensors_become_float32(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    bf16 = torch.from_numpy(arrays["latents"]).bfloat16()
    save_file({"z": bf16, "labels": torch.from_numpy(arrays["labels"])}, tmp_path / "z.safetensors")
    assert main(["latents", "import", str(tmp_path / "z.safetensors"), str(tmp_path / "out")]) == 0
    batch, _ = read_latents(latent_files(tmp_path / "out"))
    np.testing.assert_array_equal(batch.latent, bf16.float().numpy())
    assert not np.array_equal(batch.latent, arrays["latents"])  # the rounding really happened


def _error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(["latents", "import", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_unreadable_or_ambiguous_inputs_name_what_was_found(arrays: dict[str, np.ndarray], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "out")
    np.savez(tmp_path / "two.npz", z=arrays["latents"], latents=arrays["latents"], y=arrays["labels"])
    err = _error(capsys, str(tmp_path / "two.npz"), out)
    assert "ambiguous latents" in err and "z [10, 3, 4, 2] float32" in err and "y [10] int64" in err
    np.savez(tmp_path / "nolabels.npz", z=arrays["latents"], other=arrays["labels"])
    assert "no labels" in (err := _error(capsys, str(tmp_path / "nolabels.npz"), out)) and "other [10]" in err
    np.savez(tmp_path / "unnamed.npz", a=arrays["latents"], b=arrays["latents"], y=arrays["labels"])
    assert "cannot tell which array holds the latents" in _error(capsys, str(tmp_path / "unnamed.npz"), out)
    np.savez(tmp_path / "tokens.npz", z=arrays["latents"].reshape(N, 3, 8), y=arrays["labels"])
    assert "[N,C,H,W]" in _error(capsys, str(tmp_path / "tokens.npz"), out)
    np.savez(tmp_path / "neg.npz", z=arrays["latents"], y=arrays["labels"] - 1)
    assert "column 'label'" in _error(capsys, str(tmp_path / "neg.npz"), out)
    np.savez(tmp_path / "short.npz", z=arrays["latents"], y=arrays["labels"][:3])
    assert "one class index per latent" in _error(capsys, str(tmp_path / "short.npz"), out)
    np.savez(tmp_path / "both.npz", z=arrays["latents"], y=arrays["labels"])
    np.save(tmp_path / "y.npy", arrays["labels"])
    assert "drop one" in _error(capsys, str(tmp_path / "both.npz"), out, "--labels", str(tmp_path / "y.npy"))
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    assert "not a readable .pt file" in _error(capsys, str(tmp_path / "bad.pt"), out)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    assert "a tensor or a dict of tensors" in _error(capsys, str(tmp_path / "list.pt"), out)
    assert "allowed: .npy, .npz" in _error(capsys, str(tmp_path / "x.h5"), out)

    assert main(["latents", "import", str(tmp_path / "both.npz"), out]) == 0
    assert "already holds latents" in _error(capsys, str(tmp_path / "both.npz"), out)  # never replaced


def test_help_lists_every_recognised_name(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["latents", "import", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for names in ROLES.values() for name in names) and ".safetensors" in out
