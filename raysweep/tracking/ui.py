"""How the MLflow UI (3.17) opens a study: on its training runs, with raysweep's headline metrics as columns.

What its JS bundle (mlflow/server/js/build) does, and why each setting is here:
- The experiment page shows the GenAI workspace (traces "Overview") or the "Model training" runs view according to
  `workflowType`: the URL parameter `workflowType=machine_learning|genai` if present, else the browser's local
  storage `mlflow.workflowType`, which defaults to `genai`. The experiment tag `mlflow.experimentKind` is read only
  when workflow-based navigation is off, and OSS 3.17 hard-codes it on: that is why the tag alone changed nothing.
  So `raysweep ui` opens a URL that carries `workflowType=machine_learning`; the tag is still set for UIs that
  honour it.
- Runs-table columns live in per-browser UI state (default: Source, Models, Dataset). A saved view is an
  experiment tag `mlflow.sharedViewState.<key>` holding an envelope {name, createdAt, updatedAt, state} whose
  `state` is the JSON of search facets (searchFilter, orderByKey, orderByAsc, ...) and UI state (selectedColumns,
  ...); the URL parameter `viewStateShareKey=<key>` applies it. Column keys are `metrics.\\`<name>\\``.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlencode, urlparse

from raysweep.tracking.keys import mlflow_name

KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"
VIEW_KEY = "raysweep"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "raysweep: tokenizer and diffusion runs"
HEADLINE_METRICS = ("recon/psnr", "latent/velocity/viv", "latent/semantic/lnc@5", "latent/spatial/srss",
                    "gen/best/gfid")
# Every run but the study's own, flat and sorted by run name, so a tokenizer's diffusion runs follow it. (Sorted by
# start time, the table nests runs under their parents: all of them would fold under the study run.)
RUNS_FILTER = "tags.`raysweep.stage` != 'study'"
ORDER_BY = "tags.`mlflow.runName`"
VIEW_CREATED_MS = 0  # a constant envelope: every process that creates the experiment writes the same tag


def column(metric: str) -> str:
    """The runs table's key of a metric column (MLflow's makeCanonicalSortKey)."""
    return f"metrics.`{mlflow_name(metric)}`"


def view_state() -> str:
    """The saved view's envelope (JSON): that filter and order, the headline metrics as columns."""
    state = {"searchFilter": RUNS_FILTER, "orderByKey": ORDER_BY, "orderByAsc": True,
             "selectedColumns": [column(m) for m in HEADLINE_METRICS]}
    return json.dumps({"name": VIEW_NAME, "createdAt": VIEW_CREATED_MS, "updatedAt": VIEW_CREATED_MS,
                       "state": json.dumps(state)})


def experiment_tags() -> dict[str, str]:
    return {KIND_TAG: KIND, VIEW_TAG: view_state()}


def runs_url(base: str, experiment_id: str) -> str:
    """The page to open: the experiment's training runs in the saved view."""
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def local_store_path(tracking_uri: str) -> Path | None:
    """The file or directory a local tracking URI keeps its store in (sqlite DB, file store); None for servers
    and databases elsewhere (http, postgresql...), which opening creates nothing local for."""
    scheme, _, rest = tracking_uri.partition("://")
    if not rest:  # a bare path: MLflow's file store
        return Path(tracking_uri)
    if scheme == "sqlite":
        path = rest.removeprefix("/")
        return None if path in ("", ":memory:") else Path(path)
    if scheme == "file":
        return Path(urlparse(tracking_uri).path)
    return None


SQLITE_HEADER = b"SQLite format 3\x00"


def store_problem(tracking_uri: str) -> str | None:
    """Why the local store at `tracking_uri` cannot be read as it is (None if it can, or is not local): missing
    (opening it would create one), or a file that is not an SQLite database (MLflow would fail deep in SQLAlchemy,
    or migrate an empty file into a new store)."""
    path = local_store_path(tracking_uri)
    if path is None:
        return None
    if not path.exists():
        return "no tracking store at {uri}: the study has not run yet"
    if tracking_uri.startswith("sqlite:") and path.is_file():
        with path.open("rb") as f:
            if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                return "{uri} is not an SQLite database (empty, or another kind of file)"
    return None


def check_port_free(host: str, port: int) -> None:
    """ConfigError naming --host/--port if the server could not listen there (taken, no such address), checked
    before this process becomes the server (whose own error would come after its start-up logs)."""
    from raysweep.config.errors import ConfigError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as err:
        raise ConfigError("--host", "", f"{host!r} is not an address this machine has ({err.strerror or err}); "
                                        "use 127.0.0.1 (this machine) or 0.0.0.0 (every interface)") from None
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as err:
            raise ConfigError("--port", "", f"cannot listen on {host}:{port} ({err.strerror or err}); choose "
                                            "another --port, 1 to 65535") from None


JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def server_env() -> dict[str, str]:
    """The server's environment: MLflow's job runner (GenAI scorer jobs, which raysweep never submits) off unless
    asked for; it is one more process to start and, on a busy machine, to outlive the server by seconds."""
    return {**os.environ, JOB_EXECUTION_ENV: os.environ.get(JOB_EXECUTION_ENV, "false")}


def server_command(tracking_uri: str, host: str, port: int, workers: int) -> list[str]:
    """`mlflow ui` on the study's store. MLflow's own process forwards SIGTERM and SIGINT to its uvicorn server,
    so `raysweep ui`, which execs it, stops the server when it is stopped."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
            "--host", host, "--port", str(port), "--workers", str(workers)]
