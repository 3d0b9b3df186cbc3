"""Read a study's run tree back into tidy DataFrames: the results table (a row per tokenizer x backbone x seed x CFG
scale) and the curves the figures need (trajectory length ratios, latent curves such as VIV(t))."""
from __future__ import annotations

import ast
import json
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raysweep.tracking.keys import (
    BACKBONE_TAG,
    CARD_HASH_TAG,
    CFG_KEY,
    CHECKPOINT_GFID,
    EVALUATION_TAG_PREFIX,
    FAILURE_REASON_TAG,
    RUN_KEYS,
    SAMPLER_PREFIX,
    SEED_TAG,
    STOPPED,
    TIER_GFID_KEY,
    TIER_RUNG,
    TIER_TAG,
    TOKENIZER_ID_TAG,
    TOKENIZER_SEED_TAG,
    checkpoint_gfid_column,
    mlflow_name,
    sampler_gfid_key,
    stopped_reason,
)
from raysweep.tracking.tracker import HASH_TAG, PARENT_TAG, Tracker

TOKENIZER_PREFIXES = ("latent/", "recon/")
RUN_PREFIXES = ("traj/", "gen/best/", "gen/nocfg/", SAMPLER_PREFIX)  # per diffusion run, on each of its CFG rows
CARD_PREFIX = "card."  # card fields are logged as params `card.<field>`
LENGTH_RATIO = "traj/length_ratio"  # history: step = Euler segment
CURVES_DIR = "curves"  # on a tokenizer run: `<stage>_curves.json` files of {key: {"grid": [...], "values": [...]}}
SORT_KEYS = [*RUN_KEYS, "cfg_scale"]
STOPPED_STATUS = "STOPPED"  # a diffusion run stopped at a cheap tier by ASHA (multi-fidelity gFID)
SUPERSEDED_STATUS = "SUPERSEDED"  # a run of inputs the study no longer has, replaced by a run of its current key
HISTORY_THREADS = 8


def open_study(tracking_uri: str, experiment: str) -> Tracker:
    """A Tracker on an existing experiment; ValueError naming the experiments there when it does not exist."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if client.get_experiment_by_name(experiment) is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"no experiment {experiment!r} at {tracking_uri}; experiments there: {names}")
    return Tracker(tracking_uri, experiment)


def _tokenizer_columns(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    cols: dict[str, Any] = {
        "tokenizer_id": tags.get("tokenizer_id", run.info.run_name),
        "tokenizer_seed": int(tags.get(TOKENIZER_SEED_TAG, 0)),
        "family": tags.get("family"), "cluster": tags.get("cluster"), "variant": tags.get("variant"),
        "tokenizer_run_id": run.info.run_id, "recon_card_hash": tags.get(CARD_HASH_TAG),
    }
    cols.update({f"recon_{k}": v for k, v in run.data.params.items() if k.startswith(CARD_PREFIX)})
    cols.update({k: v for k, v in Tracker.metrics_of(run).items() if k.startswith(TOKENIZER_PREFIXES)})
    return cols


def _card_columns(run: Any) -> dict[str, Any]:
    """`card_hash` and the `card.<field>` tags of a diffusion run (params on runs logged before a re-score could
    update them; absent fields stay absent)."""
    params = {k: v for k, v in {**run.data.params, **run.data.tags}.items() if k.startswith(CARD_PREFIX)}
    return {"card_hash": run.data.tags.get(CARD_HASH_TAG), **params}


def _identity(run: Any, tokenizer: Any | None = None) -> tuple[Any, ...]:
    """Which job a run is, whatever its inputs: a tokenizer's (id, seed); a diffusion run's its tokenizer's, backbone
    and seed."""
    if tokenizer is None:
        return run.data.tags.get(TOKENIZER_ID_TAG, run.info.run_name), run.data.tags.get(TOKENIZER_SEED_TAG, "0")
    return *_identity(tokenizer), run.data.tags.get(BACKBONE_TAG), run.data.tags.get(SEED_TAG, "0")


def replaced_run_ids(tokenizers: dict[str, Any], diffusion: list[Any], planned: Collection[str]) -> set[str]:
    """The run ids of runs replaced by a run of the same job under a key of `planned` (the study plan's keys): a
    study edited since (e.g. more diffusion steps) keeps its older runs in MLflow; a diffusion run of a replaced
    tokenizer is replaced too. A run whose job has no run of a planned key is not judged here (status names it)."""
    def key(run: Any) -> str | None:
        return run.data.tags.get(HASH_TAG)

    current = {_identity(t) for t in tokenizers.values() if key(t) in planned}
    old = {i for i, t in tokenizers.items() if key(t) not in planned and _identity(t) in current}
    runs: list[tuple[Any, Any]] = [(d, tokenizers[d.data.tags[PARENT_TAG]]) for d in diffusion
                                   if d.data.tags.get(PARENT_TAG) in tokenizers]
    current = {_identity(d, t) for d, t in runs if key(d) in planned and t.info.run_id not in old}
    return old | {d.info.run_id for d, t in runs
                  if t.info.run_id in old or (key(d) not in planned and _identity(d, t) in current)}


def _status(tok: Any, diff: Any | None, superseded: Collection[str] = ()) -> tuple[str, str]:
    """A superseded or failed run's status and reason; STOPPED for a diffusion run ASHA stopped at a cheap tier
    (finished, but not a measured row: it has no gen/ metrics). SUPERSEDED for runs of `superseded` (ids)."""
    for run in (tok, diff):
        if run is not None and run.info.run_id in superseded:
            return SUPERSEDED_STATUS, (f"{run.data.tags.get('mlflow.runName', run.info.run_id)}: tracked under "
                                       "inputs the study no longer has (replaced by a run of its current key)")
    for run in (tok, diff):
        if run is not None and run.info.status != "FINISHED":
            reason = run.data.tags.get(FAILURE_REASON_TAG, f"run status {run.info.status}")
            return run.info.status, f"{run.data.tags.get('mlflow.runName', run.info.run_id)}: {reason}"
    if diff is not None and diff.data.tags.get(TIER_TAG) == STOPPED:
        rung = int(Tracker.metrics_of(diff).get(TIER_RUNG, 0))
        return STOPPED_STATUS, f"{diff.data.tags.get('mlflow.runName', diff.info.run_id)}: {stopped_reason(rung)}"
    return "FINISHED", ""


def checkpoint_curve(tracker: Tracker, run_id: str, metrics: dict[str, float]) -> dict[str, float]:
    """`conv/gfid@<step>` -> the run's cheap-tier gFID at that checkpoint: the history of `CHECKPOINT_GFID`, or
    without it the cheap ASHA rungs' `tier/rung<r>/gfid` (each logged once, at its rung's step); {} with neither.
    Only runs that logged one of them cost history reads."""
    keys = [CHECKPOINT_GFID] if CHECKPOINT_GFID in metrics else [k for k in metrics if TIER_GFID_KEY.match(k)]
    return {checkpoint_gfid_column(m.step): m.value for key in keys
            for m in tracker.client.get_metric_history(run_id, mlflow_name(key))}


def _last_scored(metrics: dict[str, float], tags: dict[str, str]) -> dict[str, float]:
    """The run's metrics without those of an earlier evaluation: a re-score after `cfg_scales`, `sampler_check` or
    `scorers` changed leaves the old `gen/cfg<s>/*`, `gen/sampler/*` and `gen/*/<metric>@<scorer>` values on the run
    (MLflow keeps every key), and a scale no longer swept must not be a row, nor win the best-CFG choice, nor a
    removed scorer stay a target. The run's `eval.*` tags say what its last scoring swept; a run without them
    (logged before they existed) keeps everything."""
    def literal(name: str) -> Any:
        raw = tags.get(f"{EVALUATION_TAG_PREFIX}{name}")
        return None if raw is None else ast.literal_eval(raw)

    scales, samplers, scorers = literal("cfg_scales"), literal("sampler_check"), literal("scorers")
    swept = None if scales is None else {float(s) for s in scales}
    checked = None if samplers is None else {sampler_gfid_key(v["method"], v["steps"]) for v in samplers}
    scored = None if scorers is None else {v["name"] for v in scorers}

    def current(key: str) -> bool:
        if key.startswith(SAMPLER_PREFIX):
            return checked is None or key in checked
        match = CFG_KEY.match(key)
        if match and swept is not None and float(match.group(1)) not in swept:
            return False
        return scored is None or not key.startswith("gen/") or "@" not in key or key.rsplit("@", 1)[1] in scored

    return {k: v for k, v in metrics.items() if current(k)}


def study_table(tracker: Tracker, exclude_backbones: Collection[str] = (),
                planned: Collection[str] | None = None) -> pd.DataFrame:
    """Every tokenizer and diffusion run of the study, failed ones included (with `status` and `reason`), but the
    diffusion runs of `exclude_backbones` (a backbone ladder's cheap tier, reported apart). With `planned` (the
    study plan's job keys), runs replaced by a run of the same job under a planned key (`replaced_run_ids`) are rows
    of status SUPERSEDED, never measured rows: an edited study's older runs stay in the experiment, and must not be
    pooled with the runs of its current inputs.

    Columns: ids and tags (tokenizer_id, tokenizer_seed, family, cluster, variant, backbone, seed, run ids), `status`,
    `reason`, `cfg_scale`, `latent/*`, `recon/*`, `recon_card_hash` and `recon_card.<field>` of the tokenizer, `traj/*`,
    `gen/best/*` and `gen/nocfg/*` of the diffusion run, `gen/<metric>` at the row's CFG scale (from
    `gen/cfg<scale>/<metric>`), the diffusion run's evaluation card: `card_hash` and `card.<field>`, and its cheap
    gFID per checkpoint `conv/gfid@<step>` where logged (`checkpoint_curve`).
    A tokenizer without any diffusion run gets one row with status NO_DIFFUSION.
    """
    tokenizers = {r.info.run_id: r for r in tracker.runs("tokenizer")}
    rows: list[dict[str, Any]] = []
    seen_tokenizers: set[str] = set()
    diffusion = tracker.runs("diffusion")
    old = replaced_run_ids(tokenizers, diffusion, planned) if planned is not None else set()
    for diff in diffusion:
        tok = tokenizers.get(diff.data.tags.get(PARENT_TAG, ""))
        if tok is None or diff.data.tags.get("backbone") in exclude_backbones:
            continue
        seen_tokenizers.add(tok.info.run_id)
        status, reason = _status(tok, diff, old)
        base = {**_tokenizer_columns(tok), "backbone": diff.data.tags.get("backbone"),
                "seed": int(diff.data.tags.get("seed", 0)), "diffusion_run_id": diff.info.run_id,
                "status": status, "reason": reason, **_card_columns(diff)}
        metrics = _last_scored(Tracker.metrics_of(diff), diff.data.tags)
        base.update({k: v for k, v in metrics.items() if k.startswith(RUN_PREFIXES) and k != LENGTH_RATIO})
        if diff.info.run_id not in old:  # a superseded run's curve is never read: no history request for it
            base.update(checkpoint_curve(tracker, diff.info.run_id, metrics))
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
            status, reason = _status(tok, None, old)
            rows.append({**_tokenizer_columns(tok), "status": status if status != "FINISHED" else "NO_DIFFUSION",
                         "reason": reason or "no diffusion run", "cfg_scale": np.nan, "gen/gfid": np.nan})
    table = pd.DataFrame(rows)
    if not table.empty:
        for key in SORT_KEYS:  # no diffusion run yet (every one skipped, failed or still to come): no backbone/seed
            if key not in table.columns:
                table[key] = np.nan
        table = table.sort_values(SORT_KEYS, na_position="last", ignore_index=True)
    return table


def split_superseded(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(today's rows, without the columns only SUPERSEDED rows filled (an old run's curve steps); the SUPERSEDED
    rows)."""
    old = table["status"] == SUPERSEDED_STATUS if "status" in table.columns else pd.Series(False, table.index)
    current, superseded = table[~old].reset_index(drop=True), table[old].reset_index(drop=True)
    only_old = [c for c in table.columns if current[c].isna().all() and superseded[c].notna().any()]
    return current.drop(columns=only_old), superseded


def length_ratio_curves(tracker: Tracker, run_ids: list[str]) -> pd.DataFrame:
    """Per-segment length ratios of the given diffusion runs (their `traj/length_ratio` history).

    Columns: diffusion_run_id, segment, n_segments, length_ratio; runs without the history contribute no rows.
    """
    from concurrent.futures import ThreadPoolExecutor

    def fetch(run_id: str) -> list[Any]:  # one call per run: MLflow's client has no bulk history read
        return tracker.client.get_metric_history(run_id, mlflow_name(LENGTH_RATIO))

    rows = []
    with ThreadPoolExecutor(HISTORY_THREADS) as pool:  # overlaps the round trips to a tracking server
        for run_id, history in zip(run_ids, pool.map(fetch, run_ids)):
            n_segments = len({m.step for m in history})
            rows += [(run_id, m.step, n_segments, m.value) for m in history]
    return pd.DataFrame(rows, columns=["diffusion_run_id", "segment", "n_segments", "length_ratio"])


def _local_artifact_root(tracker: Tracker) -> Path | None:
    """The experiment's artifact directory when it is on this machine's filesystem (the sqlite store's default,
    `<study>/artifacts`), else None."""
    from urllib.parse import urlparse

    location = tracker.client.get_experiment(tracker.experiment_id).artifact_location
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        root = Path(parsed.path)
        return root if root.is_dir() else None
    return None


def latent_curve(tracker: Tracker, run_ids: list[str], key: str) -> pd.DataFrame:
    """One latent curve (e.g. `latent/velocity/viv_t`) of the given tokenizer runs, read from their curve JSONs
    (`curves/*.json`: one per metric stage that logged curves on the run).

    Columns: tokenizer_run_id, t, value; runs that did not log the curve contribute no rows. On a local artifact
    store the JSON is read in place (MLflow's `<artifact root>/<run id>/artifacts/<path>` layout): per-run
    `list_artifacts` + `download_artifacts` took ~0.35 s a run, 70 s for a 200-tokenizer study.
    """
    rows = []
    local = _local_artifact_root(tracker)
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in run_ids:
            run_dir = None if local is None else local / run_id / "artifacts"
            if run_dir is not None and run_dir.is_dir():
                paths = sorted((run_dir / CURVES_DIR).glob("*.json"))
            else:
                paths = [Path(tracker.client.download_artifacts(run_id, a.path, tmp))
                         for a in tracker.client.list_artifacts(run_id, CURVES_DIR) if a.path.endswith(".json")]
            for path in paths:
                curve = json.loads(path.read_text()).get(key)
                if curve is not None:
                    rows += [(run_id, float(t), float(v)) for t, v in zip(curve["grid"], curve["values"])]
                    break
    return pd.DataFrame(rows, columns=["tokenizer_run_id", "t", "value"])
