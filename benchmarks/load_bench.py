"""Load: a study experiment with 1,000 tracked runs; `raysweep analyze` and `raysweep status` wall time, and the
MLflow write calls one tokenizer trial and one diffusion trial make.

    python benchmarks/load_bench.py                  # 200 tokenizers x 4 seeds = 1,000 runs (+ the study run)
    python benchmarks/load_bench.py --tokenizers 20  # a quick look
    python benchmarks/load_bench.py --fresh          # rebuild the synthetic store (else it is reused)
    python benchmarks/load_bench.py --shape table1   # Table 1's shape: 86 tokenizers x 4 backbones (344 runs),
                                                     # every latent metric (20 scalars + curves), 6 CFG scales

`--shape grid` (the default) logs two latent metrics (viv, sec: 3 scalars, one curve) and 3 CFG scales per run;
`--shape table1` logs the keys the registry's latent metrics really produce (computed once on random latents, the
scalars then drawn per tokenizer), one seed of each of Table 2's four backbones per tokenizer, 6 CFG scales.

The runs are synthetic (no training) but written through `raysweep.tracking.Tracker` with the calls, in the order,
the stages make them: `open_study_run`; per tokenizer the `open_run` of `stages.tokenizer`, training history in
checkpoint-sized `log_history` chunks as `train_with_checkpoints` sends it, reconstruction metrics, card params and
tags, the reconstruction grid, `finish`, then the metric stage's `log_latent_metrics` (scalars, params, the curve
JSON, one PNG per curve); per diffusion trial the `open_run` of `stages.diffusion`, its history, a sample grid per
CFG scale, the CFG curve, `cfg_views` metrics, the trajectory history, tags and `finish`. Store markers
(`result.json`) are written as the stages write them, so `status` sees a finished study.

Write calls are counted by wrapping the tracker's `MlflowClient` methods that change the store (measurement only;
the calls go through to the real sqlite store). Times are wall seconds of the real CLI in a subprocess, so they
include Python start-up and imports, as a user sees them; the target is <= 30 s each on the 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from raysweep import __version__
from raysweep.config import load_study
from raysweep.config.plan import (
    DIFFUSION_CODE_VERSION,
    TOKENIZER_CODE_VERSION,
    DiffusionJob,
    LatentMetricJob,
    StudyPlan,
    TokenizerJob,
)
from raysweep.config.spec import DISPLAY_FIELDS, StudySpec
from raysweep.engine.store import Store, provenance
from raysweep.features.card import EvalCard
from raysweep.hashing import flatten
from raysweep.runner import open_study_run
from raysweep.stages.diffusion import diffusion_result, evaluation_tags
from raysweep.stages.generation import cfg_views
from raysweep.stages.metric_logging import GRID_SUFFIX, record_metrics
from raysweep.tracking import Tracker
from raysweep.tracking.keys import CODE_VERSION_TAG, PACKAGE_VERSION_TAG

WRITES = ("create_run", "log_batch", "log_param", "log_metric", "set_tag", "set_terminated", "update_run",
          "log_artifact", "log_artifacts", "log_text", "log_dict", "delete_tag")
SHAPES = {  # tokenizers (default), diffusion backbones, seeds, CFG scales, latent metrics (None: viv and sec by hand)
    "grid": (200, [], [0, 1, 2, 3], [1.0, 1.5, 2.0], None),  # the study's default backbone
    "table1": (86, ["SiT-B", "SiT-XL", "LightningDiT-B", "LightningDiT-XL"], [0], [1.0, 1.5, 1.75, 2.0, 2.5, 3.0],
               ["fisher", "linear_probe", "lnc", "sec", "spatial", "uniformity", "viv", "viv_mixture"]),
}
TRAIN_KEYS = ("loss", "l1", "kl", "reg")


class CountingClient:
    """The tracker's MlflowClient, counting the calls that write (everything else passes through untouched)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in WRITES:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)
        return counted


def study_yaml(root: Path, n_tokenizers: int, shape: str) -> Path:
    _, backbones, seeds, scales, metrics = SHAPES[shape]
    lrs = [float(f"{x:.6e}") for x in np.geomspace(1e-4, 1e-3, n_tokenizers)]
    variants = f", variants: {json.dumps([{'backbone': b} for b in backbones])}" if backbones else ""
    text = (f"name: load\nstorage: {{root: {root / 'store'}, checkpoint_every: 50}}\n"
            f"tokenizers: {{steps: 100, lr: {{grid: {json.dumps(lrs)}}}}}\n"
            f"diffusion: {{steps: 100, seeds: {json.dumps(seeds)}{variants}}}\n"
            f"evaluation: {{cfg_scales: {json.dumps(scales)}}}\n"
            f"metrics: {{names: {json.dumps(metrics or ['viv', 'sec'])}}}\n")
    path = root / "load.yaml"
    path.write_text(text)
    return path


def card(kind: str, seed: int) -> EvalCard:
    return EvalCard(kind=kind, feature_network="domain", feature_weights_sha256="0" * 64, fd_networks="domain:0",
                    fd_protocol="mean", reference_dataset="d", reference_split="val", reference_size=500,
                    preprocessing="uint8", resize_crop="none", num_samples=500, class_balancing="round-robin",
                    sampler="euler" if kind == "generation" else "none", steps=50, cfg_scales="1,1.5,2",
                    guidance_interval="", timestep_shift=1.0, seed=seed, precision="float32", prc="knn",
                    feature_check="not run (synthetic)")


def history(tracker: Tracker, run_id: str, steps: int, every: int, rng: np.random.Generator,
            prefix: str = "train/") -> None:
    """What `train_with_checkpoints` sends: one `log_history` per checkpoint chunk, a row per step."""
    for start in range(0, steps, every):
        tracker.log_history(run_id, [(s, {f"{prefix}{k}": float(rng.random()) for k in TRAIN_KEYS})
                                     for s in range(start + 1, min(steps, start + every) + 1)])


def hand_values(rng: np.random.Generator) -> dict[str, Any]:
    """The `grid` shape's latent metrics: viv (scalar and curve) and sec at two scales."""
    t = np.linspace(0, 1, 11)
    return {"latent/velocity/viv": float(rng.random()), "latent/smoothness/sec@0.5": 0.5,
            "latent/smoothness/sec@0.25": 0.4, "latent/velocity/viv_t": rng.random(11),
            f"latent/velocity/viv_t{GRID_SUFFIX}": t}


def registry_values(names: list[str]) -> Callable[[np.random.Generator], dict[str, Any]]:
    """The keys `names` really log (one pass over 256 random 4x8x8 latents); each call draws new scalars."""
    from raysweep.data.latents import LatentBatch
    from raysweep.metrics.metric_set import MetricSet

    rng, n = np.random.default_rng(0), 256
    batch = LatentBatch(np.arange(n, dtype=np.int64), (np.arange(n) % 10).astype(np.int32),
                        rng.standard_normal((n, 4, 8, 8)).astype(np.float32),
                        (rng.random((n, 8, 8)) > 0.5).astype(np.uint8))
    template = MetricSet(names).run([batch])
    return lambda r: {k: float(r.random()) if np.ndim(v) == 0 else v for k, v in template.items()}


def tokenizer_trial(study: StudySpec, tracker: Tracker, store: Store, study_run: str, job: TokenizerJob,
                    metrics_job: LatentMetricJob, png: Path, rng: np.random.Generator, values: dict[str, Any]) -> str:
    trial = job.trial
    run_id = tracker.open_run(job.id, "tokenizer", job.key, parent_id=study_run,
                              tags={**trial.tags(), CODE_VERSION_TAG: TOKENIZER_CODE_VERSION,
                                    PACKAGE_VERSION_TAG: __version__},
                              params=flatten(trial.model_dump(exclude=set(DISPLAY_FIELDS) - {"id"})))
    history(tracker, run_id, trial.steps, study.storage.checkpoint_every, rng)
    metrics = {"recon/psnr": 20 + 10 * float(rng.random()), "recon/rfid": 10 * float(rng.random())}
    tracker.log_metrics(run_id, metrics, step=trial.steps)
    rec = card("reconstruction", 0)
    tracker.log_params(run_id, rec.params())
    tracker.set_tags(run_id, {"recon.feature_network": "domain", **rec.tags()})
    tracker.log_artifact(run_id, png, "figures")
    store.mark_done(store.tokenizer(job.key), {"metrics": metrics, "run_id": run_id, "id": trial.id,
                                               **provenance(job.record())})
    tracker.finish(run_id)
    record_metrics(tracker, store, metrics_job, list(metrics_job.names), run_id, values,
                   params={"viv": {"t_points": 11}})
    return run_id


def diffusion_trial(study: StudySpec, tracker: Tracker, store: Store, job: DiffusionJob, tokenizer_run_id: str,
                    png: Path, rng: np.random.Generator) -> None:
    trial, seed, scales = job.trial, job.seed, study.evaluation.cfg_scales
    gen = card("generation", seed)
    run_id = tracker.open_run(
        job.id, "diffusion", job.key, parent_id=tokenizer_run_id,
        tags={"tokenizer_id": job.tokenizer.id, "backbone": trial.backbone, "seed": seed,
              CODE_VERSION_TAG: DIFFUSION_CODE_VERSION, PACKAGE_VERSION_TAG: __version__},
        params={**flatten(trial.model_dump()), "seed": seed, "tokenizer_id": job.tokenizer.id})
    history(tracker, run_id, trial.steps, study.storage.checkpoint_every, rng)
    scores = {s: {"gfid": 50 * float(rng.random()), "is": 5.0, "fd": 1.0} for s in sorted({1.0, *scales})}
    for _ in scores:
        tracker.log_artifact(run_id, png, "samples")
    tracker.log_artifact(run_id, png, "figures")
    metrics = {**cfg_views(scores, scales), "traj/straightness": 0.9, "traj/efficiency": 0.8}
    tracker.log_metrics(run_id, metrics, step=trial.steps)
    tracker.log_history(run_id, [(i, {"traj/length_ratio": float(r)}) for i, r in enumerate(rng.random(8))])
    tracker.set_tags(run_id, {"gen.feature_network": "domain", "gen.best_cfg": metrics["gen/best/cfg_scale"]})
    tracker.set_tags(run_id, evaluation_tags(job, study.evaluation, gen))
    store.mark_done(store.diffusion(job.key), diffusion_result(job, run_id, metrics))
    tracker.finish(run_id)


def build(study: StudySpec, png: Path, values: Callable[[np.random.Generator], dict[str, Any]]) -> dict[str, float]:
    """Write every run; returns the write calls of the first tokenizer trial (with its metric stage) and of the
    first diffusion trial."""
    tracker = Tracker(study.tracking_uri, study.experiment_name)
    counting = CountingClient(tracker.client)
    tracker.client = counting  # type: ignore[assignment]
    store = Store(study.root)
    rng = np.random.default_rng(0)
    study_run = open_study_run(study, tracker)
    per_trial: dict[str, float] = {}

    def measured(name: str, fn: Callable[[], Any]) -> Any:
        before = sum(counting.calls.values())
        out = fn()
        per_trial.setdefault(name, sum(counting.calls.values()) - before)
        return out

    plan = StudyPlan.from_spec(study)  # the jobs, and so the keys, the stages would run
    tokenizers = plan.of(TokenizerJob)
    metric_jobs = {j.upstream: j for j in plan.of(LatentMetricJob)}
    t0 = time.perf_counter()
    for i, tok in enumerate(tokenizers):
        run_id = measured("tokenizer", lambda: tokenizer_trial(study, tracker, store, study_run, tok,
                                                               metric_jobs[tok.key], png, rng, values(rng)))
        for dif in (j for j in plan.of(DiffusionJob) if j.tokenizer.key == tok.key):
            measured("diffusion", lambda: diffusion_trial(study, tracker, store, dif, run_id, png, rng))
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{len(tokenizers)} tokenizers written ({time.perf_counter() - t0:.0f} s)", flush=True)
    tracker.finish(study_run)
    per_trial["write_seconds"] = time.perf_counter() - t0
    per_trial["calls_by_method"] = dict(counting.calls)  # type: ignore[assignment]
    return per_trial


def timed_cli(*args: str) -> tuple[float, float]:
    """(wall s, CPU s) of the real CLI in a subprocess; CPU seconds (user + system of the child) do not depend on
    what else the shared machine runs, wall seconds do."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "raysweep.cli", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"raysweep {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return seconds, cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="grid")
    parser.add_argument("--tokenizers", type=int, help="tokenizer runs (default: grid 200, table1 86)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "raysweep-load")
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    n_tokenizers, metrics = args.tokenizers or SHAPES[args.shape][0], SHAPES[args.shape][4]
    root = args.out / (str(n_tokenizers) if args.shape == "grid" else f"{args.shape}-{n_tokenizers}")
    if args.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    path = study_yaml(root, n_tokenizers, args.shape)
    study = load_study(path)
    writes_file = root / "writes.json"
    if not writes_file.exists():
        png = root / "grid.png"
        from PIL import Image

        Image.new("RGB", (64, 64)).save(png)
        values = hand_values if metrics is None else registry_values(metrics)
        writes_file.write_text(json.dumps(build(study, png, values), indent=2))
    writes = json.loads(writes_file.read_text())
    runs = len(Tracker(study.tracking_uri, study.experiment_name).runs())
    status_s, status_cpu = timed_cli("status", str(path))
    analyze_s, analyze_cpu = timed_cli("analyze", "--n-boot", "1000", str(path))
    print(json.dumps({"shape": args.shape, "runs": runs, "status_s": round(status_s, 1),
                      "status_cpu_s": round(status_cpu, 1),
                      "analyze_s": round(analyze_s, 1), "analyze_cpu_s": round(analyze_cpu, 1),
                      "load_average_1min": os.getloadavg()[0],
                      "writes_per_tokenizer_trial": writes["tokenizer"],
                      "writes_per_diffusion_trial": writes["diffusion"],
                      "write_seconds_total": round(writes["write_seconds"], 1),
                      "writes_by_method": writes["calls_by_method"]}, indent=2))


if __name__ == "__main__":
    main()
