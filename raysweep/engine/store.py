"""The study directory: a content-addressed store of stage outputs, keyed by config hash.

    <root>/mlflow.db                         default tracking store
    <root>/data/<dataset-key>/{train,val}.npz
    <root>/reference/<ref-key>/              stage 0 feature network
    <root>/tokenizers/<tok-key>/             checkpoint, result.json (the 'done' marker); metrics/ and
                                             model_metrics/ hold the markers of its metric jobs
    <latents>/<tok-key>/{train,val}/         Parquet latents (the contract in raysweep.data.latents); <latents>
                                             is storage.latents (a directory or s3://, gs://, file:// URI),
                                             default <root>/latents
    <root>/diffusion/<run-key>/              result.json, sample grids; fisher/ the marker of its metric job
    <root>/search/<search-key>/              a tokenizer search's result.json (its tokenizers, scores, feasibility)
    <root>/tune/                             Ray Tune experiment state (restored on re-run)
    <root>/allocation.json                   a proxy-guided study's allocation state (raysweep.search.allocation)

A stage output is finished exactly when its `result.json` exists and is the planned job's (`Job.current`: a metric
job's entries carry each metric's key, a diffusion run's result its evaluation key); it is written last and
atomically, with the inputs its key was made of and the package version (`provenance`). Every file
here is written through `raysweep.atomic` (temp + fsync + rename), so a kill leaves the old file or the new one.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raysweep import __version__
from raysweep.atomic import write_json_atomic
from raysweep.config.plan import STOPPED_RESULT as STOPPED_RESULT  # re-exported: a field of stored results
from raysweep.config.plan import (
    DiffusionJob,
    DiffusionMetricJob,
    Job,
    LatentMetricJob,
    ModelMetricJob,
    TokenizerJob,
    TokenizerSearchJob,
)
from raysweep.data.location import join

RESULT_FILE = "result.json"
ALLOCATION_FILE = "allocation.json"
LATENT_METRIC_DIR = "metrics"  # under the tokenizer's directory
MODEL_METRIC_DIR = "model_metrics"  # under the tokenizer's directory
DIFFUSION_METRIC_DIR = "fisher"  # under the diffusion run's directory
TOKENIZER_FILE = "tokenizer.pt"  # the trained tokenizer, under its directory
VELOCITY_MODEL_FILE = "velocity_model.pt"  # the trained (EMA) velocity field, under the diffusion run's directory


def provenance(record: dict[str, Any]) -> dict[str, Any]:
    """What a result records beside its values: a job's `record()` (the readable inputs of its key) and the package
    that made it."""
    return {**record, "raysweep_version": __version__}


@dataclass(frozen=True)
class Store:
    root: Path
    latent_root: str | None = None  # None: <root>/latents

    def data(self, key: str) -> Path:
        return self.root / "data" / key

    def reference(self, key: str) -> Path:
        return self.root / "reference" / key

    def tokenizer(self, key: str) -> Path:
        return self.root / "tokenizers" / key

    def latents(self, key: str, split: str) -> str | Path:
        """A `Path`, or a URI string when the latents live on object storage."""
        return join(self.latent_root or self.root / "latents", key, split)

    def tokenizer_file(self, key: str) -> Path:
        return self.tokenizer(key) / TOKENIZER_FILE

    def diffusion(self, key: str) -> Path:
        return self.root / "diffusion" / key

    def velocity_model_file(self, key: str) -> Path:
        return self.diffusion(key) / VELOCITY_MODEL_FILE

    def diffusion_results(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(training key, result) of every finished diffusion run in the store, current or not."""
        for path in sorted((self.root / "diffusion").glob(f"*/{RESULT_FILE}")):
            yield path.parent.name, json.loads(path.read_text())

    def marker(self, job: Job) -> Path | None:
        """The directory whose `result.json` says `job` is finished; None for jobs never cached (the analysis)."""
        where = MARKERS.get(type(job))
        return None if where is None else where(self, job)

    def done(self, job: Job) -> dict[str, Any] | None:
        """`job`'s stored result, or None while it is not finished (or what is stored is not this job's)."""
        found = self.found(job)
        return found if found is not None and job.current(found) else None

    def run_id(self, job: Job) -> str:
        """The MLflow run of a finished `job`, read by a step that runs after it."""
        done = self.done(job)
        if done is None:
            raise RuntimeError(f"{job.ref} is not finished ({self.marker(job)}): a step after it reads its run")
        return done["run_id"]

    def cached_marker(self, job: Job) -> Path:
        """`marker` of a job that is cached (every job but the analysis)."""
        marker = self.marker(job)
        if marker is None:
            raise RuntimeError(f"{job.ref} has no marker: its result is never stored")
        return marker

    def found(self, job: Job) -> dict[str, Any] | None:
        """Whatever result is stored at `job`'s marker, current or not."""
        marker = self.marker(job)
        return None if marker is None else self.result(marker)

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def allocation_state(self) -> Path:
        """The saved state of a proxy-guided study's allocation (`diffusion.allocation: proxy`)."""
        return self.root / ALLOCATION_FILE

    @staticmethod
    def result(directory: Path) -> dict[str, Any] | None:
        """The finished result of a stage output, or None if it is not finished."""
        path = directory / RESULT_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    @classmethod
    def finished(cls, directory: Path) -> dict[str, Any]:
        """The result of a stage output that a step after it reads."""
        found = cls.result(directory)
        if found is None:
            raise RuntimeError(f"{directory} is not finished: a step after it reads its result")
        return found

    @staticmethod
    def mark_done(directory: Path, result: dict[str, Any]) -> None:
        write_json_atomic(directory / RESULT_FILE, result)

    def finish(self, job: Job, result: dict[str, Any]) -> None:
        """Write `job`'s result with its record and provenance, whole (a metric job: every metric's entry)."""
        self.mark_done(self.cached_marker(job), provenance({**result, **job.record()}))


# where each job type's marker lives (a type absent here is never cached: the analysis, a confirmation slot)
MARKERS: dict[type[Job], Callable[[Store, Any], Path]] = {
    TokenizerJob: lambda store, job: store.tokenizer(job.key),
    LatentMetricJob: lambda store, job: store.tokenizer(job.upstream) / LATENT_METRIC_DIR,
    ModelMetricJob: lambda store, job: store.tokenizer(job.upstream) / MODEL_METRIC_DIR,
    DiffusionJob: lambda store, job: store.diffusion(job.key),
    DiffusionMetricJob: lambda store, job: store.diffusion(job.upstream) / DIFFUSION_METRIC_DIR,
    TokenizerSearchJob: lambda store, job: store.root / "search" / job.key,
}
