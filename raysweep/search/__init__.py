"""Proxy-guided studies: a calibrated proxy of gFID from latent metrics decides where diffusion compute goes.

proxy.py        Bayesian linear model: latent + reconstruction metrics -> gFID with Student-t predictive intervals
acquisition.py  which tokenizer's measured gFID most changes the study's answer (top-k set, metric-gFID r)
allocation.py   the allocation state machine (budget, calibration, acquisition, stop), JSON-serialisable
fidelity.py     multi-fidelity gFID through Ray Tune's ASHA, and tier rank agreement
tokenizer_search.py  tokenizers.search through a Ray Tune search algorithm (Optuna TPE or random)
keys.py         MLflow keys of predicted values (never gen/...)
report.py       the report section: measured vs predicted, held-out proxy error
estimate.py     `raysweep plan --json` GPU-hours of the proxy-guided study beside brute force
replay.py       replays of finished studies (benchmarks/allocation_bench.py)
"""
