"""MLflow keys of predicted values. A predicted gFID is never logged under `gen/...` (measured only), so the tidy
table's metric columns (`analysis/tidy.py METRIC_PREFIXES`) never pick it up: correlations and regressions use
measured rows only. (To move into the engine's keys module at merge.)"""
from __future__ import annotations

PRED_PREFIX = "pred/"
PRED_GFID = "pred/gfid"          # posterior-predictive mean of the tokenizer's gFID
PRED_GFID_LO = "pred/gfid_lo"    # lower end of the central `pred/level` interval
PRED_GFID_HI = "pred/gfid_hi"
PRED_LEVEL = "pred/level"        # e.g. 0.9
PRED_TOP_PROB = "pred/top_prob"  # P(tokenizer among the study's top-k)
PRED_TAG = "raysweep.gfid_source"  # run tag: "measured" or "predicted"
MEASURED, PREDICTED = "measured", "predicted"
