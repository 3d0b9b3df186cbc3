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
from urllib.parse import urlencode

from raysweep.tracking.tracker import mlflow_name

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
