"""What a proxy-guided study reports: measured and predicted tokenizers side by side, predictions labelled with their
intervals, and how good the proxy was on held-out measured tokenizers (leave-one-out)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from raysweep.analysis.rank_agreement import rank_agreement
from raysweep.analysis.report import ReportSection
from raysweep.search.allocation import AllocationState, Allocator
from raysweep.search.proxy import loo_predictions
from raysweep.tracking.keys import (
    MEASURED,
    PRED_GFID,
    PRED_GFID_HI,
    PRED_GFID_LO,
    PRED_LEVEL,
    PRED_TOP_PROB,
    PREDICTED,
    STOPPED,
)


@dataclass(frozen=True)
class ProxyQuality:
    """Leave-one-out error of the proxy on the measured tokenizers (NaN with fewer than 3)."""

    n: int
    rmse: float
    coverage: float  # fraction of held-out gFIDs inside their `level` interval
    spearman: float
    level: float


def proxy_quality(allocator: Allocator, state: AllocationState) -> ProxyQuality:
    level = allocator.spec.level
    if len(state.measured) < 3:
        return ProxyQuality(len(state.measured), np.nan, np.nan, np.nan, level)
    rows = [allocator.index[i] for i, _ in state.measured]
    y = np.array([v for _, v in state.measured])
    pred = loo_predictions(allocator.features[rows], y, allocator.features)
    lo, hi = pred.interval(level)
    return ProxyQuality(len(y), float(np.sqrt(((pred.mean - y) ** 2).mean())), float(((y >= lo) & (y <= hi)).mean()),
                        float(stats.spearmanr(pred.mean, y)[0]), level)


def predicted_metrics(allocator: Allocator, state: AllocationState) -> dict[str, dict[str, float]]:
    """MLflow metrics per *unmeasured* tokenizer (pred/* keys only); measured tokenizers get none: their gFID is the
    diffusion runs' gen/gfid."""
    post = allocator.posterior(state)
    pred = allocator.fit(state).predict(allocator.features)
    lo, hi = pred.interval(allocator.spec.level)
    measured = state.measured_ids()
    return {t: {PRED_GFID: float(pred.mean[i]), PRED_GFID_LO: float(lo[i]), PRED_GFID_HI: float(hi[i]),
                PRED_LEVEL: allocator.spec.level, PRED_TOP_PROB: float(post.top_prob[i])}
            for i, t in enumerate(allocator.ids) if t not in measured}


def allocation_table(allocator: Allocator, state: AllocationState) -> pd.DataFrame:
    """One row per tokenizer, best first: `source` measured / predicted / failed / stopped (every trial
    stopped at a cheap tier by ASHA); measured gFID in `gfid`, predictions
    only in `predicted_gfid` with their interval (never in `gfid`)."""
    pred = predicted_metrics(allocator, state)
    measured = dict(state.measured)
    rows = []
    for t in allocator.ids:
        p = pred.get(t, {})
        source = (MEASURED if t in measured else "failed" if t in state.failed else STOPPED if t in state.stopped
                  else PREDICTED)
        rows.append({"tokenizer_id": t, "source": source, "gfid": measured.get(t, np.nan),
                     "predicted_gfid": p.get(PRED_GFID, np.nan), "interval_lo": p.get(PRED_GFID_LO, np.nan),
                     "interval_hi": p.get(PRED_GFID_HI, np.nan), "p_top": p.get(PRED_TOP_PROB, np.nan)})
    frame = pd.DataFrame(rows)
    order = frame["gfid"].fillna(frame["predicted_gfid"])
    return frame.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def allocation_section(allocator: Allocator, state: AllocationState) -> ReportSection:
    """The report's section for a proxy-guided study."""
    q = proxy_quality(allocator, state)
    table = allocation_table(allocator, state)
    counts = table["source"].value_counts()
    stopped = f", {counts[STOPPED]} stopped at a cheap tier by ASHA" if STOPPED in counts else ""
    note = (f"{counts.get(MEASURED, 0)} tokenizers measured, {counts.get(PREDICTED, 0)} predicted "
            f"({counts.get('failed', 0)} failed{stopped}); allocation {state.done or 'in progress'}, "
            f"{state.trials_spent} of {len(allocator.ids) * allocator.trials_per_tokenizer} diffusion trials. "
            f"Predicted gFID (column predicted_gfid, MLflow {PRED_GFID}) is the proxy's, with its "
            f"{q.level:.0%} interval; correlations and regressions use measured rows only. Proxy on held-out measured "
            f"tokenizers (leave-one-out, n = {q.n}): RMSE {q.rmse:.3g}, Spearman {q.spearman:.2f}, "
            f"{q.coverage:.0%} inside their {q.level:.0%} intervals.")
    return ReportSection("Proxy-guided allocation: measured and predicted gFID", table, note)


def ladder_section(cheap: dict[str, float], target: dict[str, float], backbone: str, targets: list[str],
                   top_k: int = 3) -> ReportSection:
    """A backbone ladder: did the cheap backbone rank the tokenizers as the target backbone does? Spearman and
    top-k overlap over the tokenizers measured on both (`analysis.rank_agreement`)."""
    a = rank_agreement(cheap, target, top_k)
    frame = pd.DataFrame([{"cheap_backbone": backbone, "target_backbones": ", ".join(targets),
                           "tokenizers_cheap": len(cheap), "tokenizers_target": len(target),
                           "tokenizers_with_both": a.n, **a.columns()}])
    note = (f"Best-CFG gFID of each tokenizer's {backbone} run (the cheap tier, on every tokenizer) against its mean "
            f"over the target runs ({', '.join(targets)}), over the {a.n} tokenizers the allocation promoted. The "
            f"cheap runs are not in the correlations above. Promoted tokenizers are those the proxy (cheap gFID "
            f"among its features) ranked best, so this agreement is measured on a truncated range.")
    return ReportSection(f"Backbone ladder: {backbone} vs {', '.join(targets)}", frame, note)


def fidelity_section(cheap: dict[str, float], full: dict[str, float], top_k: int = 3) -> ReportSection:
    """Whether the cheap tier could be trusted: rank agreement with the full tier where both were measured."""
    a = rank_agreement(cheap, full, top_k)
    frame = pd.DataFrame([{"trials_at_cheap_rung": len(cheap), "reached_full_tier": len(full),
                           "trials_with_both": a.n, **a.columns()}])
    note = (f"Cheap-tier gFID (ASHA's first rung) against full-tier gFID over the {a.n} trials promoted to the full "
            f"tier; ASHA stopped {len(cheap) - len(full)} of {len(cheap)} trials before it (finished, not measured: "
            f"no gen/ values, not in the correlations). Promoted trials are the cheap tier's best, so this agreement "
            f"is measured on a truncated range.")
    return ReportSection("Multi-fidelity gFID: cheap vs full tier", frame, note)
