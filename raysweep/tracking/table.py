"""Read a study's run tree back into one tidy DataFrame: a row per tokenizer x backbone x seed x CFG scale."""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from raysweep.tracking.tracker import PARENT_TAG, Tracker

CFG_KEY = re.compile(r"^gen/cfg([0-9.]+)/(\w+)$")
TOKENIZER_PREFIXES = ("latent/", "recon/")


def _tokenizer_columns(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    cols: dict[str, Any] = {
        "tokenizer_id": tags.get("tokenizer_id", run.info.run_name),
        "family": tags.get("family"), "cluster": tags.get("cluster"), "variant": tags.get("variant"),
        "tokenizer_run_id": run.info.run_id,
    }
    cols.update({k: v for k, v in Tracker.metrics_of(run).items() if k.startswith(TOKENIZER_PREFIXES)})
    return cols


def _status(tok: Any, diff: Any | None) -> tuple[str, str]:
    for run in (tok, diff):
        if run is not None and run.info.status != "FINISHED":
            reason = run.data.tags.get("raysweep.failure_reason", f"run status {run.info.status}")
            return run.info.status, f"{run.data.tags.get('mlflow.runName', run.info.run_id)}: {reason}"
    return "FINISHED", ""


def study_table(tracker: Tracker) -> pd.DataFrame:
    """Every tokenizer and diffusion run of the study, failed ones included (with `status` and `reason`)."""
    tokenizers = {r.info.run_id: r for r in tracker.runs("tokenizer")}
    rows: list[dict[str, Any]] = []
    seen_tokenizers: set[str] = set()
    for diff in tracker.runs("diffusion"):
        tok = tokenizers.get(diff.data.tags.get(PARENT_TAG, ""))
        if tok is None:
            continue
        seen_tokenizers.add(tok.info.run_id)
        status, reason = _status(tok, diff)
        base = {**_tokenizer_columns(tok), "backbone": diff.data.tags.get("backbone"),
                "seed": int(diff.data.tags.get("seed", 0)), "diffusion_run_id": diff.info.run_id,
                "status": status, "reason": reason}
        metrics = Tracker.metrics_of(diff)
        base.update({k: v for k, v in metrics.items() if k.startswith("traj/") and "length_ratio" not in k})
        per_cfg: dict[float, dict[str, float]] = {}
        for key, value in metrics.items():
            match = CFG_KEY.match(key)
            if match:
                per_cfg.setdefault(float(match.group(1)), {})[f"gen/{match.group(2)}"] = value
        if not per_cfg:
            rows.append({**base, "cfg_scale": np.nan, "gen/gfid": np.nan})
        for scale, gen in sorted(per_cfg.items()):
            rows.append({**base, "cfg_scale": scale, **gen})
    for run_id, tok in tokenizers.items():
        if run_id not in seen_tokenizers:
            status, reason = _status(tok, None)
            rows.append({**_tokenizer_columns(tok), "status": status if status != "FINISHED" else "NO_DIFFUSION",
                         "reason": reason or "no diffusion run", "cfg_scale": np.nan, "gen/gfid": np.nan})
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(["tokenizer_id", "backbone", "seed", "cfg_scale"], na_position="last",
                                  ignore_index=True)
    return table
