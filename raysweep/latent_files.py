"""`raysweep metrics PATH...`: latent metrics of any Parquet latent files (yours, a study's, another tool's).

Files are streamed in batches of `BATCH_ROWS` rows. Without raysweep's statistics footer the per-channel mean and
std are computed in a first streaming pass (said once). Inputs on which the metrics are meaningless stop with a
one-line error; inputs on which they are defined but weaker are warned about. A metric that is still undefined
(NaN) comes back as None with its reason in `MetricsReport.undefined`.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from raysweep.config import ConfigError
from raysweep.data.latents import (
    FG_MASK,
    HASH_KEY,
    LABEL,
    LATENT,
    MEAN_KEY,
    SAMPLE_ID,
    STD_KEY,
    Footer,
    LatentBatch,
    LatentDataError,
    LatentMeta,
    check_norm_hash,
    check_one_set,
    compute_norm_hash,
    iter_latent_batches,
    open_latent_file,
)
from raysweep.data.location import Location, is_dir, is_uri, list_files, resolve, uri_scheme
from raysweep.metrics import MetricSet, metric_info, metrics_consuming
from raysweep.metrics.base import Moments, channel_moments
from raysweep.stages.metric_logging import split_values

log = logging.getLogger(__name__)
BATCH_ROWS = 4096  # rows per streamed batch: bounds memory; metrics are exact under any split
FOOTER_TOLERANCE = 0.5  # footer vs data statistics, in units of the larger std (see `_check_footer_matches`)
DEAD_RELATIVE_STD = 1e-6  # a channel whose std is below this share of |mean| is constant up to float32 rounding
Say = Callable[[str], None]

JsonValue = float | list[float | None] | None


@dataclass(frozen=True)
class LatentSet:
    """The files of one latent set, opened, with the statistics the metrics standardise with."""

    files: list[tuple[Location, pq.ParquetFile]]
    meta: LatentMeta
    rows: int
    has_mask: bool
    source: str  # how messages name the set: the file, or the first file and how many more
    first_pass: bool  # the statistics were computed (the footer has none)

    def batches(self) -> Iterator[LatentBatch]:
        return _batches(self.files, self.meta.shape)


@dataclass(frozen=True)
class MetricsReport:
    """JSON-ready values (NaN -> None, inside curves too) and, for every key holding a None, why."""

    values: dict[str, JsonValue]
    undefined: dict[str, str]


def _expand(paths: Sequence[Location]) -> list[Location]:
    """Directories (local or pyarrow.fs URIs) become their Parquet files; files stay as given."""
    files: list[Location] = []
    for path in paths:
        try:
            files += list_files(path, "*.parquet") if is_dir(path) else [path]
        except (ValueError, OSError) as err:  # an unknown URI scheme, an unreachable or unlistable location
            raise LatentDataError(f"{path}: {err}") from None
    if not files:
        raise FileNotFoundError(f"no Parquet latent files in {', '.join(map(str, paths))}: give *.parquet files or "
                                "directories holding them (other formats: `raysweep latents import`)")
    first: dict[str, int] = {}
    for i, path in enumerate(files):  # read twice, every latent would be its own nearest neighbour (LNC up)
        same = first.setdefault(_identity(path), i)
        if same != i:
            raise LatentDataError(f"{path}: the same file as {files[same]} (given twice, directly or through a "
                                  "directory or link); give each file once")
    return files


def _identity(path: Location) -> str:
    """What makes two arguments one file: the real path of a local file, else the URI."""
    if is_uri(str(path)) and uri_scheme(str(path)) != "file":
        return str(path)
    local = resolve(path)[1] if is_uri(str(path)) else str(path)
    return os.path.realpath(local)


def _batches(files: list[tuple[Location, pq.ParquetFile]], shape: tuple[int, int, int]) -> Iterator[LatentBatch]:
    for path, file in files:
        yield from iter_latent_batches(path, file, shape, BATCH_ROWS)


def _scan(files: list[tuple[Location, pq.ParquetFile]], shape: tuple[int, int, int]) -> LatentMeta:
    """One streaming pass before any metric: every batch validated (nulls, non-numbers, NaN/inf refused by column
    and row), `sample_id`s unique over the whole set, and the per-channel mean and population std over N,H,W as
    `write_latents` stores them."""
    total: Moments | None = None
    ids: list[np.ndarray] = []
    for batch in _batches(files, shape):
        if len(batch):
            moments = channel_moments(batch.latent)
            total = moments if total is None else total + moments
            ids.append(batch.sample_id)
    assert total is not None  # `open_set` refused an empty set first
    _check_unique_ids(files, ids)
    mean, std = total.mean, np.sqrt(total.m2 / total.count)
    return LatentMeta(shape=shape, tokenizer_id="", channel_mean=mean, channel_std=std,
                      norm_hash=compute_norm_hash(mean, std))


def _check_unique_ids(files: list[tuple[Location, pq.ParquetFile]], ids: list[np.ndarray]) -> None:
    """A `sample_id` twice is one image counted twice (a copied file, a concatenation): refused, naming both rows."""
    every = np.concatenate(ids)
    order = np.argsort(every, kind="stable")
    repeats = np.flatnonzero(every[order][1:] == every[order][:-1])
    if not len(repeats):
        return
    starts = np.cumsum([0] + [file.metadata.num_rows for _, file in files])

    def where(i: int) -> str:
        f = int(np.searchsorted(starts, i, side="right")) - 1
        return f"row {i - starts[f]} of {files[f][0]}"

    a, b = order[repeats[0]], order[repeats[0] + 1]
    raise LatentDataError(f"{files[0][0] if len(files) == 1 else 'latent files'}: column '{SAMPLE_ID}': "
                          f"{len(repeats)} repeated id(s), first {every[a]} at {where(a)} and {where(b)}; every image "
                          "needs its own sample_id (is a file given twice?)")


def _check_footer_matches(footer: LatentMeta, data: LatentMeta, source: str) -> None:
    """Footer statistics standardise the latents for every metric; statistics far from the data's (edited, or
    another set's with its hash recomputed) would shift every value without a word. The tolerance admits a
    subset of a written set (one part file of several): means within half a std, stds within a factor of 2."""
    std_f, std_d = footer.channel_std, data.channel_std
    scale = np.maximum(std_f, std_d) + 1e-6 * (1 + np.abs(data.channel_mean))
    for key, bad in ((MEAN_KEY, np.abs(footer.channel_mean - data.channel_mean) > FOOTER_TOLERANCE * scale),
                     (STD_KEY, np.abs(std_f - std_d) > FOOTER_TOLERANCE * scale)):
        if bad.any():
            ch = int(np.flatnonzero(bad)[0])
            given, actual = (footer.channel_mean, data.channel_mean) if key == MEAN_KEY else (std_f, std_d)
            raise LatentDataError(f"{source}: metadata '{key}': channel {ch} says {given[ch]:.6g} but the data's is "
                                  f"{actual[ch]:.6g}; the statistics are not these latents' (re-encode them, or drop "
                                  f"'{MEAN_KEY}', '{STD_KEY}' and '{HASH_KEY}' to have them computed)")


def open_set(paths: Sequence[Location], shape: tuple[int, int, int] | None = None) -> LatentSet:
    """Open and check the files as one set; statistics from the footer, or from a first pass when it has none."""
    files = _expand(paths)
    opened = [open_latent_file(path, shape, strict=False) for path in files]
    footers: list[Footer] = [footer for _, footer in opened]
    check_one_set(files, footers)
    handles = [(path, file) for path, (file, _) in zip(files, opened)]
    rows = sum(file.metadata.num_rows for _, file in handles)
    source = str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more file(s))"
    if rows == 0:  # nothing to measure; several metrics would divide by zero
        raise LatentDataError(f"{source}: column '{LATENT}': no rows in {len(files)} file(s); nothing to measure "
                              "(write at least one latent per class)")
    first_pass = footers[0].stats is None
    if not first_pass:
        meta = footers[0].meta(str(files[0]))
        check_norm_hash(meta, str(files[0]))
    scanned = _scan(handles, footers[0].shape)
    if first_pass:
        meta = scanned
    else:
        _check_footer_matches(meta, scanned, str(files[0]))
    return LatentSet(handles, meta, rows, footers[0].has_mask, source, first_pass)


def check_degenerate(latents: LatentSet, say: Say) -> None:
    """Constant latents carry no information: every metric is 0 by construction or undefined (VIV reads 0.0, the
    t-SNE of uniformity crashes), so they stop here. One constant channel leaves the metrics defined over the
    others (it is only centred, never divided by its zero std): a warning."""
    mean, std = latents.meta.channel_mean, latents.meta.channel_std
    dead = np.flatnonzero(std <= DEAD_RELATIVE_STD * np.abs(mean))
    if len(dead) == len(std):
        raise LatentDataError(f"{latents.source}: column '{LATENT}': every channel is constant (values "
                              f"{np.round(mean, 6).tolist()}); the metrics are undefined on latents that carry no "
                              "information: check the encoder's output")
    if len(dead):
        say(f"warning: {latents.source}: column '{LATENT}': channel(s) {dead.tolist()} of {len(std)} have zero "
            "variance (constant); the metrics are computed, those channels only add a constant")


def _census(batches: Iterator[LatentBatch], classes: dict[int, Moments]) -> Iterator[LatentBatch]:
    """Pass batches through, keeping per-class moments of the latents (`count` is the class size): the class
    census the warnings and reasons quote, and the within-class spread `_check_classes` needs."""
    for batch in batches:
        for label in np.unique(batch.label).tolist():
            moments = Moments.of(batch.latent[batch.label == label], axis=(0,))
            classes[label] = classes[label] + moments if label in classes else moments
        yield batch


def _check_classes(latents: LatentSet, classes: dict[int, Moments], say: Say) -> None:
    """One class, or classes that are each a single point, leave the class-conditional metrics defined but
    decided by construction (LNC 1, VIV 0): warned, so such a value is never read as a finding."""
    if len(classes) == 1:
        say(f"warning: {latents.source}: column '{LABEL}': one class ({next(iter(classes))}) only; the "
            "label-based metrics are undefined (null): give class labels 0..K-1")
        return
    total = float(np.sum(latents.meta.channel_std ** 2)) * np.prod(latents.meta.shape[1:])
    spread = [float(m.m2.sum()) / m.count for m in classes.values() if m.count > 1]
    if spread and max(spread) <= DEAD_RELATIVE_STD ** 2 * total:
        say(f"warning: {latents.source}: column '{LATENT}': the latents of every class are identical (zero "
            "within-class variance); VIV is 0 and LNC 1 by construction")


class _Capture(logging.Handler):
    """Metric warnings: said as they come, and kept as the reasons of the values they explain."""

    def __init__(self, say: Say) -> None:
        super().__init__(logging.WARNING)
        self.say, self.messages = say, list[str]()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        self.say(f"warning: {message}")


@contextmanager
def _captured(say: Say) -> Iterator[_Capture]:
    """Route `raysweep.metrics` warnings through `say` only (no propagation: a configured root logger would
    print them twice)."""
    logger, handler = logging.getLogger("raysweep.metrics"), _Capture(say)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _reasons(metric_keys: dict[str, tuple[str, ...]], messages: list[str]) -> dict[str, list[str]]:
    """Metric key -> the warnings its metric logged. A warning starts with `latent/<perspective>/<name>:`; it
    belongs to the metric that has that key, or keys `<that>@...` (lnc@5, lnc@10)."""
    out: dict[str, list[str]] = {}
    for keys in metric_keys.values():
        mine = [m for m in messages if (p := m.split(": ", 1)[0]) in keys or any(k.startswith(p + "@") for k in keys)]
        out.update({key: mine for key in keys})
    return out


def _json_ready(values: dict[str, Any], reasons: dict[str, list[str]], census: str) -> MetricsReport:
    scalars, curves = split_values(values)
    out: dict[str, JsonValue] = {}
    undefined: dict[str, str] = {}
    for key, value in [*scalars.items(), *((k, v) for k, (_, v) in curves.items())]:
        arr = np.asarray(value, dtype=float)
        finite = np.isfinite(arr)
        out[key] = [float(x) if ok else None for x, ok in zip(arr, finite)] if arr.ndim else \
            (float(arr) if finite else None)
        if not finite.all():  # the metric's own warnings, else what is known about the input
            undefined[key] = "; ".join(reasons.get(key, [])) or \
                f"the metric is undefined (NaN) on these latents ({census}); see its docstring"
    return MetricsReport(out, undefined)


def metrics_for_files(paths: Sequence[Location], only: list[str] | None = None,
                      shape: tuple[int, int, int] | None = None, say: Say = log.warning) -> MetricsReport:
    """Metric values keyed by MLflow name (curves as lists), None where undefined with the reason beside it.
    Files are validated (one-line errors naming the file and column); notes and warnings go through `say`."""
    latent = metrics_consuming("latents")
    names = only or latent
    unknown = [n for n in names if n not in latent]
    if unknown:
        allowed = ", ".join(latent)
        raise ConfigError("--only", "", f"unknown metric(s) {', '.join(unknown)}; allowed: {allowed}")
    latents = open_set(paths, shape)
    check_degenerate(latents, say)
    if latents.first_pass:  # said after the checks: a refused input gets its one error line and nothing else
        say(f"note: {latents.source}: no raysweep statistics in the footer ('{MEAN_KEY}', '{STD_KEY}', "
            f"'{HASH_KEY}'); computed them in a first pass over {latents.rows} rows")
    metrics = MetricSet(names).with_footer(latents.meta)
    classes: dict[int, Moments] = {}
    with _captured(say) as capture:
        values = metrics.run(_census(latents.batches(), classes))
    _check_classes(latents, classes, say)
    census = (f"{latents.rows} rows in {len(classes)} class(es), smallest {min(m.count for m in classes.values()):g}"
              f" rows, '{FG_MASK}' {'present' if latents.has_mask else 'absent'}")
    return _json_ready(values, _reasons(metrics.keys(), capture.messages), census)


JSON_HELP = """\
--json: one JSON object: every metric key -> a number, a list (curves, per-class arrays) or null where the
  value is undefined; "undefined" maps each key holding a null (itself or inside its list) to the reason.
  Never NaN or Infinity, so jq and browsers read it."""


def metrics_help() -> str:
    """The `raysweep metrics --help` epilog: the registered metrics by perspective, the file contract, --json."""
    from raysweep.data.latents import CONTRACT_HELP

    infos = {name: metric_info(name) for name in metrics_consuming("latents")}
    rows = [f"  {name:<13} {info.perspective:<11} {info.summary}"
            for name, info in sorted(infos.items(), key=lambda kv: (kv[1].perspective, kv[0]))]
    return "\n\n".join(["metrics (--only NAME,...; default all):\n  name          perspective summary\n"
                        + "\n".join(rows), CONTRACT_HELP, JSON_HELP])
