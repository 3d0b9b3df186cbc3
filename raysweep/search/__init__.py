"""Proxy-guided studies: a calibrated proxy of gFID from latent metrics decides where diffusion compute goes.

proxy.py             Bayesian linear model: latent + reconstruction metrics -> gFID with Student-t intervals
acquisition.py       which tokenizer's measured gFID most changes the answer (top-k set, metric-gFID r)
allocation.py        the allocation state machine (budget, calibration, acquisition, stop), JSON-serialisable
fidelity.py          multi-fidelity gFID through Ray Tune's ASHA, and tier rank agreement
tokenizer_search.py  tokenizers.search through a Ray Tune search algorithm (Optuna TPE or random)
report.py            the report section: measured vs predicted, held-out proxy error
estimate.py          `raysweep plan --json` GPU-hours of the proxy-guided study beside brute force
replay.py            replays of finished studies (benchmarks/allocation_bench.py)
MLflow keys of predicted values (pred/*, never gen/*) live in raysweep/tracking/keys.py with the measured ones.

Wiring into the study engine (`spec = allocation_of(study)`; None = brute force, today's plan):
1. plan --json: `proxy_estimate(estimate_gpu_hours(study), spec, checkpoints=steps // storage.checkpoint_every)`.
2. When every tokenizer's latent (and recon) metrics are in: `allocator = Allocator.from_table(spec, per_tokenizer,
   trials_per_tokenizer=len(diffusion_trials) * len(seeds), gpu_hours=..., seed=study.seed)`;
   `state = load_state(root / "allocation.json") or allocator.start()`.
3. Loop: `state, batch = allocator.propose(state)`; `save_state(...)`; enqueue the DiffusionJobs (every backbone x
   seed) of the tokenizers in `batch`; when all of one tokenizer's DiffusionMetricJobs are done,
   `state = allocator.record(state, tid, gfid)` (mean best-CFG gen/gfid, None if they failed); save; propose again.
   Stop when `state.done` and nothing is pending. A resumed study records pending tokenizers whose jobs are done.
4. Then log `predicted_metrics(allocator, state)` on the unmeasured tokenizers' runs and pass
   `allocation_section(allocator, state)` to the report.
"""
