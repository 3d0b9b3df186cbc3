"""Proxy-guided studies: a calibrated proxy of gFID from latent metrics decides where diffusion compute goes.

proxy.py             Bayesian linear model: latent + reconstruction metrics -> gFID with Student-t intervals
acquisition.py       which tokenizer's measured gFID most changes the answer (top-k set, metric-gFID r)
allocation.py        the allocation state machine (budget, calibration, acquisition, stop), JSON-serialisable
fidelity.py          multi-fidelity gFID through Ray Tune's ASHA, and tier rank agreement
tokenizer_search.py  tokenizers.search through a Ray Tune search algorithm (Optuna TPE or random)
report.py            the report section: measured vs predicted, held-out proxy error
estimate.py          `raysweep plan --json` GPU-hours of the proxy-guided study beside brute force
replay.py            complete studies as replay inputs: a tracked study, any results table, synthetic draws
policies.py          allocation policies replayed: proxy (the default), random, sort:<feature>, calibrate-greedy, ...
comparison.py        `raysweep replay`: the diffusion compute each policy needs for the answer (allocation_bench.py)
MLflow keys of predicted values (pred/*, never gen/*) live in raysweep/tracking/keys.py with the measured ones.

Wired into the study engine by `raysweep/stages/allocation_gate.py` (`ProxyGate`, a scheduler `Gate`): it builds
the `Allocator` from the tracked latent/recon metrics once every tokenizer's metric jobs are over, releases the
chosen tokenizers' diffusion jobs, records their mean best-CFG gFID, saves the state in `Store.allocation_state`,
and skips the rest; the runner logs `predicted_metrics` on the unmeasured tokenizers' runs, the analysis adds
`allocation_section` (`allocation_report`), `raysweep plan --json` shows `proxy_estimate`, `raysweep status` the
allocation. With `fidelity`, the gate groups each batch's diffusion jobs into cohorts that the runner runs as one
Tune experiment under `asha_scheduler` (`stages.diffusion.cohort_task`, `engine.tune.run_cohort`); the analysis adds
`fidelity_section` from the tracked `tier/` values. A backbone ladder (`fidelity.backbone`) adds a cheap-backbone
diffusion job per tokenizer to the plan; the gate feeds its gFID to the Allocator as one more feature
(`cheap_gfid`; calibration measures its favourites first), `proxy_estimate` prices it and the analysis adds
`ladder_section`. Not wired yet: `tokenizer_search.py` (`tokenizers.search`).
"""
