"""MLflow names shared by the writers (stages) and the readers (table, analysis, views): metric keys, tags."""
from __future__ import annotations

import re

# MLflow metric names may not contain '@'; raysweep's keys (`latent/semantic/lnc@5`) are stored with ':' instead.
TO_MLFLOW, FROM_MLFLOW = str.maketrans("@", ":"), str.maketrans(":", "@")


def mlflow_name(key: str) -> str:
    return key.translate(TO_MLFLOW)


def raysweep_key(name: str) -> str:
    return name.translate(FROM_MLFLOW)


FAILURE_REASON_TAG = "raysweep.failure_reason"  # why a run is FAILED or KILLED
CARD_HASH_TAG = "raysweep.eval_card_hash"  # the evaluation card a run's scores were computed under (issue 8)
TOKENIZER_ID_TAG, BACKBONE_TAG, SEED_TAG = "tokenizer_id", "backbone", "seed"
TOKENIZER_SEED_TAG = "tokenizer_seed"  # replicates of one tokenizer configuration share its tokenizer_id
RUN_KEYS = (TOKENIZER_ID_TAG, TOKENIZER_SEED_TAG, BACKBONE_TAG, SEED_TAG)  # one diffusion run's row identity

GEN_PREFIX = "gen/"
NO_CFG_VIEW, BEST_VIEW = "nocfg", "best"  # scale 1 (always sampled), the grid scale of lowest gFID
BEST_CFG_SCALE = f"{GEN_PREFIX}{BEST_VIEW}/cfg_scale"
CFG_KEY = re.compile(rf"^{GEN_PREFIX}cfg([0-9.]+)/(.+)$")  # gen/cfg<scale>/<metric>


def cfg_view(scale: float) -> str:
    """The view name of one CFG scale: `cfg1.5`."""
    return f"cfg{scale:g}"


def gen_key(view: str, name: str) -> str:
    """`gen/<view>/<metric>`, e.g. gen/cfg1.5/gfid, gen/best/gfid; `CFG_KEY` parses the per-scale ones back."""
    return f"{GEN_PREFIX}{view}/{name}"


BEST_GFID = gen_key(BEST_VIEW, "gfid")  # a diffusion run's gFID at its best CFG scale

# the headline metric of a finished job, by stage (what `JobFinished` carries and a view shows)
HEADLINE: dict[str, str] = {"tokenizer": "recon/rfid", "diffusion": BEST_GFID}

# predicted values of a proxy-guided study (raysweep.search): a predicted gFID is never logged under `gen/...`
# (measured only), so the tidy table's metric columns (`analysis/tidy.py METRIC_PREFIXES`) never pick it up and
# correlations and regressions use measured rows only
PRED_PREFIX = "pred/"
PRED_GFID = "pred/gfid"          # posterior-predictive mean of the tokenizer's gFID
PRED_GFID_LO = "pred/gfid_lo"    # lower end of the central `pred/level` interval
PRED_GFID_HI = "pred/gfid_hi"
PRED_LEVEL = "pred/level"        # e.g. 0.9
PRED_TOP_PROB = "pred/top_prob"  # P(tokenizer among the study's top-k)
PRED_TAG = "raysweep.gfid_source"  # tokenizer run tag: "measured" or "predicted"
MEASURED, PREDICTED = "measured", "predicted"

# multi-fidelity gFID (diffusion.allocation.fidelity, raysweep.search.fidelity): a trial's best-CFG gFID at ASHA's
# cheap rungs (fewer steps, fewer samples) is logged on its diffusion run under `tier/...`, never under `gen/...`
# (full tier only), so the tidy table and the analysis never take a cheap-tier value for a measured one
TIER_PREFIX = "tier/"
TIER_GFID = "tier/gfid"  # the gFID a trial reports to Tune at each checkpoint (NaN where it is not a rung)
TIER_RUNG = "tier/rung"  # the highest rung a trial reached, counted from 1 (the last rung is the full tier)
TIER_TAG = "raysweep.tier"  # diffusion run tag under fidelity: FULL_TIER or STOPPED
FULL_TIER, STOPPED = "full", "stopped"


def tier_gfid_key(rung: int) -> str:
    """`tier/rung<r>/gfid`: the cheap-tier gFID at rung r (1 = ASHA's first rung)."""
    return f"{TIER_PREFIX}rung{rung}/gfid"


def stopped_reason(rung: int) -> str:
    """The outcome of a trial ASHA stopped, as the store, the table and the report say it (finished, not failed)."""
    return f"stopped at rung {rung} by ASHA"

# `tokenizers.search` (raysweep.search.tokenizer_search, stages/search.py): the search has its own run (stage
# SEARCH_STAGE, under the study run); each tokenizer it trained is a normal tokenizer run that also carries its
# search score, feasibility and whether it was confirmed (got the study's diffusion trials)
SEARCH_STAGE = "tokenizer_search"
SEARCH_SCORE = "search/score"            # the objective oriented for minimisation, plus the constraint penalty
SEARCH_FEASIBLE = "search/feasible"      # 1 when the constraint holds (or there is none), else 0
SEARCH_ORDER = "search/order"            # the trial's place in the search (0 = first suggested)
SEARCH_FEASIBLE_COUNT = "search/feasible_count"  # on the search run
SEARCH_BEST = "search/best_objective"    # on the search run: the objective of the best feasible tokenizer
SEARCH_RUN_TAG = "raysweep.search_run"   # tokenizer run -> the search run that trained it
SEARCH_CONFIRMED_TAG = "raysweep.search_confirmed"  # tokenizer run: "true" / "false"
SEARCH_TRIALS_TAG = "raysweep.search_trials"        # search run: its tokenizer ids, in search order
SEARCH_CHOSEN_TAG = "raysweep.search_confirmed_ids"  # search run: the confirmed tokenizer ids, best first

# convergence check (issue 23, analysis/convergence.py): a diffusion run's cheap-tier gFID at every checkpoint, logged
# with step = the training step; the tidy table turns its history (or, without it, the cheap ASHA rungs'
# `tier/rung<r>/gfid`) into `conv/gfid@<step>` columns
CHECKPOINT_GFID = "conv/gfid"
TIER_GFID_KEY = re.compile(rf"^{TIER_PREFIX}rung\d+/gfid$")  # what `tier_gfid_key` writes


SAMPLER_PREFIX = "gen/sampler/"  # the sampler check's values: one per diffusion run, repeated on its CFG rows


def sampler_gfid_key(method: str, steps: int) -> str:
    """A diffusion run's gFID at its best CFG scale re-sampled with `method` at `steps` (the sampler check)."""
    return f"{SAMPLER_PREFIX}gfid@{method}{int(steps)}"


def checkpoint_gfid_column(step: int) -> str:
    """The tidy-table column of the cheap gFID at checkpoint `step`: `conv/gfid@<step>`."""
    return f"{CHECKPOINT_GFID}@{int(step)}"

# a tokenizer run's summary of its diffusion outcome (issue 23, analysis/outcome.py), logged when the study is analysed,
# so MLflow's runs table shows latent metrics and gFID on one row per tokenizer; never a `gen/` key (those are the
# diffusion runs' own) and not a table metric
OUTCOME_GFID = "outcome/gfid_mean"      # mean over the tokenizer's diffusion runs (seeds) of their best-CFG gFID
OUTCOME_GFID_LO = "outcome/gfid_ci_low"  # 95 % t interval of that mean (absent with one seed)
OUTCOME_GFID_HI = "outcome/gfid_ci_high"
OUTCOME_SEEDS = "outcome/seeds"          # how many diffusion runs the mean is over

# provenance (issue 22): what produced a run's values, as tags (params cannot change once logged; these do)
CODE_VERSION_TAG = "raysweep.code_version"  # the tokenizer / diffusion stage's code version (config.plan)
PACKAGE_VERSION_TAG = "raysweep.version"  # the raysweep package that logged the run
METRIC_VERSION_PREFIX = "raysweep.metric_version."  # + metric name: the metric class's `version`
METRIC_PARAM_PREFIX = "metrics."  # + `<metric>.<param>`: a metric's resolved parameters on the run it logs on
EVALUATION_KEY_TAG = "raysweep.evaluation_key"  # a diffusion run's evaluation key, updated on re-score
EVALUATION_TAG_PREFIX = "eval."  # + evaluation setting: how a diffusion run was last scored
MIGRATED_TAG = "raysweep.migrated_from"  # a run's key before `raysweep migrate` moved its result
CONTINUED_TAG = "raysweep.continued_from"  # a diffusion run that continued a shorter one: that run's id

# extra scorers (issue 23, `evaluation.scorers`): each one's gFID, real floor FD(val, train) and KID, logged on a
# diffusion run beside the FID network's as `<metric>@<scorer>` (`gen/best/gfid@domain-ae`; the tidy table's
# `gen/gfid@domain-ae`, each scorer's gFID its own target); stage 0 logs each scorer's real-halves check on the study
# run as `reference/<check>@<scorer>`, and a scorer it skipped as a tag with the reason
SCORER_METRICS = ("gfid", "fd_floor", "kid")
SCORER_SKIPPED_TAG_PREFIX = "raysweep.scorer_skipped."  # + scorer name: why it did not score (study run)


def scorer_metric(name: str, scorer: str) -> str:
    """`gfid@domain-ae`: a generation score of an extra scorer (under `gen/<view>/`, as the FID network's)."""
    return f"{name}@{scorer}"


def scorer_reference_key(check: str, scorer: str) -> str:
    """`reference/fd_real_halves@domain-ae`: an extra scorer's stage-0 check, on the study run."""
    return f"reference/{check}@{scorer}"
