"""The only module that talks to MLflow: the study -> tokenizer -> diffusion run tree, idempotent by config hash.

Runs are found again by the tags `raysweep.stage` + `raysweep.config_hash`, so a re-run (or a trial restored by
Tune on another node) reuses its run instead of creating a duplicate. Everything goes through `MlflowClient` with
explicit run ids: no fluent global state, which is what makes it safe inside Ray workers.
"""
from __future__ import annotations

import gc
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from raysweep.atomic import fsync_path, temp_beside
from raysweep.tracking.keys import FAILURE_REASON_TAG, mlflow_name, raysweep_key

STAGE_TAG = "raysweep.stage"
HASH_TAG = "raysweep.config_hash"
STUDY_TAG = "raysweep.study"
PARENT_TAG = "mlflow.parentRunId"
MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call
T = TypeVar("T")
TRANSIENT = ("locked", "Connection", "connection", "Max retries", "timed out", "502", "503", "504")


def _transient(err: Exception) -> bool:
    """sqlite 'database is locked', a tracking server that is down or restarting: worth waiting for."""
    return isinstance(err, OSError) or (isinstance(err, MlflowException) and any(t in str(err) for t in TRANSIENT))


def _retry(fn: Callable[[], T], timeout: float = 300.0, base_delay: float = 0.2, max_delay: float = 10.0) -> T:
    """Call `fn`, retrying transient errors with exponential backoff for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = base_delay
    while True:
        try:
            return fn()
        except Exception as err:
            if not _transient(err) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, max_delay)


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _batches(run_id: str, rows: list[Metric]) -> list[tuple[str, list[Metric]]]:
    """`rows` of one run as the queue's entries: `log_batch` calls of at most MAX_BATCH metrics, in order."""
    return [(run_id, rows[i:i + MAX_BATCH]) for i in range(0, len(rows), MAX_BATCH)]


def create_sqlite_store(tracking_uri: str) -> None:
    """Create a missing sqlite tracking DB all at once. MLflow builds a new DB by running ~60 schema migrations in
    place; a driver killed among them leaves a DB that every later run fails to open ("table _alembic_tmp_...
    already exists"). So the DB is built under a temp name and linked into place: link fails if another process
    got there first, which keeps theirs."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if path.exists():
        return
    with temp_beside(path) as tmp:  # the temp DB (and its journal) go on exit; `path` keeps its own link
        MlflowClient(f"sqlite:///{tmp}")  # creates and migrates the schema
        fsync_path(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass


class Tracker:
    """A study's MLflow experiment. Cheap to construct; pickles as (uri, experiment) for Ray workers.

    Training history is queued and sent in order; while the store is unreachable (server down or restarting) it
    stays queued and training goes on, and the next call, `flush`, `log_metrics` or `finish` sends it. These wait
    up to `retry_timeout` seconds for the store, then raise rather than drop anything. Other calls (runs, params, tags,
    artifacts) retry with backoff for up to `retry_timeout` seconds.
    """

    def __init__(self, tracking_uri: str, experiment: str, retry_timeout: float = 300.0) -> None:
        if tracking_uri.startswith(("http://", "https://")):
            # our backoff replaces MLflow's own (up to ~4 minutes per call), so a down server is noticed at once
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.retry_timeout = retry_timeout
        create_sqlite_store(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        self.pending: list[tuple[str, list[Metric]]] = []  # (run id, metrics) not yet accepted by the store
        self.experiment_id = self._ensure_experiment()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Tracker, (self.tracking_uri, self.experiment, self.retry_timeout))

    def _retry(self, fn: Callable[[], T]) -> T:
        return _retry(fn, self.retry_timeout)

    def _ensure_experiment(self) -> str:
        """Find or create the study's experiment, with the tags that make the MLflow UI open on its runs
        (raysweep.tracking.ui); an older experiment gets the tags it lacks."""
        from raysweep.tracking.ui import experiment_tags

        tags = experiment_tags()
        exp = self._retry(lambda: self.client.get_experiment_by_name(self.experiment))
        if exp is None:
            try:
                return self._retry(lambda: self.client.create_experiment(self.experiment, self._artifact_location(),
                                                                         tags=tags))
            except MlflowException:  # created concurrently by another process
                exp = self._retry(lambda: self.client.get_experiment_by_name(self.experiment))
                if exp is None:
                    raise RuntimeError(f"MLflow experiment '{self.experiment}' could neither be created nor found")
        experiment_id: str = exp.experiment_id
        if exp.lifecycle_stage == "deleted":
            self._retry(lambda: self.client.restore_experiment(experiment_id))
        for key, value in tags.items():
            if exp.tags.get(key) != value:
                self._retry(partial(self.client.set_experiment_tag, experiment_id, key, value))
        return experiment_id

    def _artifact_location(self) -> str | None:
        """A sqlite store keeps its artifacts next to the DB (in the study directory, shared on a cluster), not in
        MLflow's default `./mlruns` of whatever directory the process started in; a server decides itself."""
        if self.tracking_uri.startswith("sqlite:///"):
            return (Path(self.tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
        return None

    def find_run(self, stage: str, config_hash: str) -> Any | None:
        """The run of this stage and config, if one was ever created (any status)."""
        runs = self._retry(lambda: self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{STAGE_TAG}` = '{stage}' and tags.`{HASH_TAG}` = '{config_hash}'",
            max_results=2,
        ))
        return runs[0] if runs else None

    def open_run(self, name: str, stage: str, config_hash: str, parent_id: str | None = None,
                 tags: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None) -> str:
        """Return the run id for (stage, config_hash), creating it once. Reopened runs are marked RUNNING. Tag
        values are sent as strings (an http tracking server refuses others; sqlite stores coerce them)."""
        existing = self.find_run(stage, config_hash)
        all_tags = {STAGE_TAG: stage, HASH_TAG: config_hash, STUDY_TAG: self.experiment,
                    **{k: str(v) for k, v in (tags or {}).items()}}
        if parent_id:
            all_tags[PARENT_TAG] = parent_id
        if existing is not None:
            run_id = existing.info.run_id
            if existing.info.status != "RUNNING":
                self._retry(lambda: self.client.update_run(run_id, status="RUNNING"))
        else:
            run_id = self._retry(lambda: self.client.create_run(self.experiment_id, tags=all_tags,
                                                           run_name=name)).info.run_id
        if params:
            self.log_params(run_id, params, existing=existing)
        return run_id

    def is_finished(self, stage: str, config_hash: str) -> bool:
        run = self.find_run(stage, config_hash)
        return run is not None and run.info.status == "FINISHED"

    def log_params(self, run_id: str, params: Mapping[str, Any], existing: Any | None = None) -> None:
        """Params are immutable in MLflow: only log keys the run does not have yet."""
        have = dict(existing.data.params) if existing is not None else {}
        todo = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in have]
        for i in range(0, len(todo), 100):
            self._retry(partial(self.client.log_batch, run_id, params=todo[i:i + 100]))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self._retry(lambda: self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Final scalars (non-finite values are kept out: they would poison every plot and query). Waits for an
        unreachable store like `finish`: callers may log to runs they never finish (e.g. latent metrics)."""
        self.log_history(run_id, [(step, metrics)])
        self.flush()

    def log_history(self, run_id: str, history: list[tuple[int, Mapping[str, float]]]) -> None:
        """Many steps of training logs in as few calls as possible; queued while the store is unreachable."""
        now = int(time.time() * 1000)
        rows = [Metric(mlflow_name(k), float(v), now, step) for step, d in history for k, v in d.items()
                if math.isfinite(float(v))]
        self.pending += _batches(run_id, rows)
        self.flush(timeout=0.0)

    def flush(self, timeout: float | None = None) -> bool:
        """Send queued metrics in order, waiting up to `timeout` s (default `retry_timeout`) for an unreachable
        store. True when the queue is empty; other errors raise."""
        while self.pending:
            run_id, rows = self.pending[0]
            try:
                _retry(lambda: self.client.log_batch(run_id, metrics=rows),
                       self.retry_timeout if timeout is None else timeout)
            except Exception as err:
                if _transient(err) and timeout is not None:
                    return False
                raise
            self.pending.pop(0)
        return True

    def last_step(self, run_id: str, key: str) -> int | None:
        """The highest step logged for a metric of a run (None if never logged): where a restored trial resumes."""
        return self._last_step(run_id, mlflow_name(key))

    def _last_step(self, run_id: str, name: str) -> int | None:
        history = self._retry(lambda: self.client.get_metric_history(run_id, name))
        return max((m.step for m in history), default=None)

    def unsent(self, run_id: str) -> list[tuple[str, float, int, int]]:
        """A run's queued rows as plain (name, value, timestamp, step) tuples: a trial checkpoint carries them, so
        a trial restored on another node still sends what the lost one buffered (`weights_only` loads them)."""
        return [(m.key, m.value, m.timestamp, m.step) for r, rows in self.pending if r == run_id for m in rows]

    def requeue(self, run_id: str, rows: list[tuple[str, float, int, int]]) -> None:
        """Queue a restored checkpoint's unsent rows ahead of anything else, minus those the store already has
        (rows are sent in order, so a metric's rows up to its last stored step all arrived); then try to send."""
        last = {name: self._last_step(run_id, name) for name in {row[0] for row in rows}}
        todo = [Metric(name, value, ts, step) for name, value, ts, step in rows
                if (stored := last[name]) is None or step > stored]
        self.pending[:0] = _batches(run_id, todo)
        self.flush(timeout=0.0)

    def copy_history(self, source_id: str, run_id: str, until_step: int, prefixes: tuple[str, ...]) -> None:
        """The history of `source_id`'s metrics under `prefixes` (raysweep keys), up to `until_step`, onto `run_id`,
        minus the steps `run_id` already has: a trial restarted mid-copy copies nothing twice."""
        names = self._retry(lambda: self.client.get_run(source_id)).data.metrics
        for name in sorted(n for n in names if raysweep_key(n).startswith(prefixes)):
            last = self._last_step(run_id, name)
            history = self._retry(partial(self.client.get_metric_history, source_id, name))
            rows = [Metric(name, m.value, m.timestamp, m.step) for m in sorted(history, key=lambda m: m.step)
                    if m.step <= until_step and (last is None or m.step > last)]
            self.pending += _batches(run_id, rows)
            self.flush()

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self._retry(lambda: self.client.log_artifact(run_id, str(path), artifact_path))

    def log_json(self, run_id: str, obj: Any, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / Path(artifact_file).name
            p.write_text(json.dumps(obj, indent=2, default=str))
            self.log_artifact(run_id, p, str(Path(artifact_file).parent) if "/" in artifact_file else None)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / Path(artifact_file).name
            p.write_text(text)
            self.log_artifact(run_id, p, str(Path(artifact_file).parent) if "/" in artifact_file else None)

    def finish(self, run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
        """Mark a run terminated, after every queued metric has reached the store."""
        self.flush()
        if reason:
            self.set_tags(run_id, {FAILURE_REASON_TAG: reason[:4000]})
        self._retry(lambda: self.client.set_terminated(run_id, status=status))

    @staticmethod
    def metrics_of(run: Any) -> dict[str, float]:
        """A run's latest metric values under raysweep's keys."""
        return {raysweep_key(k): v for k, v in run.data.metrics.items()}

    def runs(self, stage: str | None = None) -> list[Any]:
        """All runs of the study (optionally one stage), paging through the store. The cyclic garbage collector
        is paused meanwhile: a page of 1,000 runs is ~80,000 ORM objects (params, tags, metrics) on a sqlite
        store, and the collections they trigger cost 2.5x the read itself (measured: 1.5 -> 0.6 CPU s for 1,100
        runs); what they would have freed is collected right after."""
        filt = f"tags.`{STAGE_TAG}` = '{stage}'" if stage else ""
        out: list[Any] = []
        token = None
        with _gc_paused():
            while True:
                page = self._retry(lambda: self.client.search_runs([self.experiment_id], filter_string=filt,
                                                              max_results=1000, page_token=token))
                out.extend(page)
                token = page.token
                if not token:
                    return out
