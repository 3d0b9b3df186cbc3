"""The CLI's contract on inputs nobody listed: study YAML and Parquet latent files mutated from valid ones (a value
swapped for a hostile one, a key dropped or added, bytes inserted or cut, footer keys edited, rows nulled or
repeated) give exit 0, or exit 2 with exactly one `error:` line on stderr; never a traceback, and nothing written
when refused. In-process `main(argv)`, derandomized and bounded so CI pays a few seconds per property."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from raysweep.cli import EXIT_BAD_INPUT, main
from raysweep.data.latents import LABEL, LATENT, MEAN_KEY, SAMPLE_ID, SHAPE_KEY, STD_KEY, write_latents

BUDGET = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

VALID_STUDY: dict[str, Any] = {
    "name": "prop", "seed": 3,
    "dataset": {"image_size": 16, "num_classes": 2, "train_size": 16, "val_size": 16},
    "tokenizers": {"steps": 2, "lr": 1.0e-3, "latent": "f4d4",
                   "variants": [{"regularizer": "baseline"}, {"regularizer": "eq", "kl_weight": 1.0e-5}]},
    "diffusion": {"backbone": "SiT-T", "patch_size": 2, "steps": 2, "seeds": [0, 1]},
    "evaluation": {"cfg_scales": [1.0, 1.5], "num_samples": 16, "guidance_interval": [0.1, 0.9]},
    "metrics": {"names": ["viv", "lnc"], "params": {"lnc": {"ks": [3]}}},
    "analysis": {"n_boot": 20},
}
HOSTILE_TEXT = ["1e-4", "nan", ".inf", "-1", "{name}", "{", "}", "search", "f8d4", "f3d4", "SiT-T", "baseline",
                "\x1b[2J", "a\nb", "\x00", "é", "~", "&a", "*a", "!!python/object:os.system", "x" * 300]
HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from([0, 1, -1, 2**32, 2**31 - 1, 3]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(HOSTILE_TEXT), st.text(max_size=8),
    st.lists(st.one_of(st.integers(-3, 40), st.floats(-2, 2), st.sampled_from(HOSTILE_TEXT)), max_size=3),
    st.dictionaries(st.sampled_from(["a", "grid", "choice", "uniform", "ks", "mu"]), st.integers(-2, 5), max_size=2),
    st.sampled_from([{"grid": [1, 2]}, {"uniform": [1.0, 0.5]}, {"loguniform": [0, 1]}, {"choice": []},
                     {"randint": [0, 10**12]}]))
BYTES = st.sampled_from([b"\x00", b"\xff\xfe", b"\x1b", b"\t", b"&a ", b"*a", b"[", b"{", b": ", b"\n  -", b"'",
                         b"<<: *a\n", b"? [x]\n"])


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path and list index of a parsed study, the root excluded."""
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    out = []
    for key, value in children:
        out += [(*prefix, key), *_paths(value, (*prefix, key))]
    return out


def _set(tree: Any, path: tuple[Any, ...], op: str, value: Any) -> None:
    *parent_path, last = path
    parent = tree
    for part in parent_path:
        parent = parent[part]
    if op == "delete":
        del parent[last]
    elif op == "add_key" and isinstance(parent[last], dict):
        parent[last]["unexpected" if not isinstance(value, str) or not value.isidentifier() else value] = value
    else:
        parent[last] = value


@st.composite
def study_texts(draw: st.DrawFn) -> bytes:
    tree = copy.deepcopy(VALID_STUDY)
    for _ in range(draw(st.integers(0, 2))):
        paths = _paths(tree)
        if paths:
            _set(tree, draw(st.sampled_from(paths)), draw(st.sampled_from(["replace", "delete", "add_key"])),
                 copy.deepcopy(draw(HOSTILE_VALUES)))  # a copy: a later mutation must not edit the strategy's value
    text = yaml.safe_dump(tree, allow_unicode=True).encode()
    if draw(st.booleans()):  # byte-level: insert something, or cut the file short
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(BYTES) + text[at:] if draw(st.booleans()) else text[:at]
    return text


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _assert_contract(code: int, err: str, written: set[Path]) -> None:
    event(f"exit {code}: {re.sub(r'[^ ]*/[^ ]*', '', err).strip()[:70]}")  # --hypothesis-show-statistics
    assert "Traceback" not in err, err
    assert code in (0, EXIT_BAD_INPUT), err
    if code == EXIT_BAD_INPUT:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert lines[0].isprintable(), err
        assert not written, written


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYSWEEP_STORAGE", str(tmp_path / "studies"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_the_valid_study_and_latents_pass(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    """The mutations' starting points are valid: a refusal in the properties comes from the mutation."""
    (workdir / "s.yaml").write_text(yaml.safe_dump(VALID_STUDY))
    assert main(["validate", "s.yaml"]) == 0, capsys.readouterr().err
    _write_valid_latents(workdir / "lat")
    assert main(["metrics", "--only", ONLY, str(workdir / "lat")]) == 0, capsys.readouterr().err


@BUDGET
@given(text=study_texts(), command=st.sampled_from(["validate", "plan", "status"]))
def test_mutated_study_files_keep_the_contract(text: bytes, command: str, workdir: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    study = workdir / "study.yaml"
    study.write_bytes(text)
    before = _files(workdir)
    code = main([command, str(study)])
    captured = capsys.readouterr()
    _assert_contract(code, captured.err, _files(workdir) - before)


ONLY = "lnc,linear_probe,sec,viv"


def _write_valid_latents(directory: Path) -> Path:
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(24, 2, 4, 4)).astype(np.float32) + np.arange(24)[:, None, None, None] % 3
    write_latents(directory, latents, np.arange(24) % 3, tokenizer_id="prop")
    return directory / "part-00000.parquet"


def _mutate_table(table: pa.Table, draw: st.DrawFn) -> pa.Table:
    """One change to the rows or a column (the footer is kept, so the statistics may no longer match)."""
    n = table.num_rows
    row = draw(st.integers(0, n - 1))
    kind = draw(st.sampled_from(["value", "null_row", "repeat_row", "labels", "drop_column", "retype", "empty"]))
    meta = table.schema.metadata
    if kind == "value":
        flat = table[LATENT].combine_chunks().flatten().to_numpy(zero_copy_only=False).copy()
        flat[draw(st.integers(0, len(flat) - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e38, -1e38,
                                                                           0.0, 1e-45]))
        width = table[LATENT].type.list_size
        column = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width)
        table = table.set_column(table.schema.get_field_index(LATENT), LATENT, column)
    elif kind == "null_row":
        name = draw(st.sampled_from([SAMPLE_ID, LABEL, LATENT]))
        mask = pa.array(np.arange(n) == row)
        column = table[name].combine_chunks()
        nulls = pa.nulls(n, column.type)
        table = table.set_column(table.schema.get_field_index(name), pa.field(name, column.type),
                                 pa.compute.if_else(mask, nulls, column))
    elif kind == "repeat_row":
        table = pa.concat_tables([table, table.slice(row, 1)])
    elif kind == "labels":
        labels = draw(st.sampled_from([np.zeros(n), np.r_[np.zeros(n - 1), 1], np.full(n, -1), np.arange(n) * 2**40,
                                       np.arange(n) + 0.5]))
        table = table.set_column(table.schema.get_field_index(LABEL), LABEL, pa.array(labels))
    elif kind == "drop_column":
        table = table.drop_columns([draw(st.sampled_from([SAMPLE_ID, LABEL, LATENT]))])
    elif kind == "retype":
        name = draw(st.sampled_from([SAMPLE_ID, LABEL, LATENT]))
        values = table[name].combine_chunks()
        if name == LATENT:
            new = pa.FixedSizeListArray.from_arrays(values.flatten().cast(pa.string()), values.type.list_size)
        else:
            new = values.cast(draw(st.sampled_from([pa.float64(), pa.string(), pa.bool_()])))
        table = table.set_column(table.schema.get_field_index(name), name, new)
    else:
        table = table.slice(0, 0)
    return table.replace_schema_metadata(meta)


def _mutate_footer(meta: dict[bytes, bytes], draw: st.DrawFn) -> dict[bytes, bytes]:
    key = draw(st.sampled_from([MEAN_KEY, STD_KEY, SHAPE_KEY, "raysweep.norm_hash", "raysweep.tokenizer_id"]))
    value = draw(st.sampled_from(["[NaN, 0.0]", "[Infinity, 1]", "[-1.0, 2.0]", "[1.0]", "[true, 1]", "{}", "",
                                  "[2, 4, 4]", "[2, 4, 0]", "[2, 4, 4, 1]", '["a", 1]', "[1e308, 1e308]",
                                  "\x1b[2J", "[0.0, 0.0]", "[100.0, 100.0]"]))
    out = dict(meta)
    if draw(st.booleans()):
        out[key.encode()] = value.encode()
    else:
        out.pop(key.encode(), None)
    return out


@st.composite
def latent_mutations(draw: st.DrawFn) -> tuple[str, Any]:
    return draw(st.sampled_from(["table"] * 3 + ["footer"] * 3 + ["bytes", "twice", "copy"])), draw(st.data())


@BUDGET
@given(mutation=latent_mutations())
def test_mutated_latent_files_keep_the_contract(mutation: tuple[str, Any], workdir: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    kind, data = mutation
    path = _write_valid_latents(workdir / "lat")
    table = pq.read_table(path)
    paths = [str(path)]
    if kind == "table":
        pq.write_table(_mutate_table(table, data.draw), path)
    elif kind == "footer":
        pq.write_table(table.replace_schema_metadata(_mutate_footer(table.schema.metadata, data.draw)), path)
    elif kind == "bytes":
        raw = path.read_bytes()
        at = data.draw(st.integers(0, len(raw) - 1))
        path.write_bytes(raw[:at] + data.draw(st.binary(max_size=8)) + raw[at + data.draw(st.integers(0, 64)):])
    elif kind == "twice":
        paths = [str(path), str(workdir / "lat")]
    else:  # the same rows under another name: one set of sample_ids, twice
        copy_path = workdir / "lat" / "part-00001.parquet"
        copy_path.write_bytes(path.read_bytes())
        paths = [str(workdir / "lat")]
    before = _files(workdir)
    code = main(["metrics", "--json", "--only", ONLY, *paths])
    captured = capsys.readouterr()
    _assert_contract(code, captured.err, _files(workdir) - before)
    if code == 0:  # strict JSON: numbers or null, never NaN
        json.loads(captured.out, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))
