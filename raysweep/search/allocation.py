"""The allocation state machine: which tokenizers get diffusion trials, in what order, and when to stop.

    allocator = Allocator.create(spec, ids, features, metric, trials_per_tokenizer=2, seed=study.seed)
    state = allocator.start()                       # or AllocationState.from_json(saved) on resume
    state, batch = allocator.propose(state)         # tokenizer ids to launch now; [] once state.done
    state = allocator.record(state, "eq", 3.1)      # as each tokenizer's gFID arrives (None: its trials failed)
    save_state(path, state)                         # after every transition

Calibration first (`calibration.count` tokenizers spread over the proxy's range), then acquisition rounds
(`acquisition.py`), until the budget (diffusion trials and/or GPU-hours, spent when launched) is exhausted or the
answer is settled (`stop`). Each round's draws use the generator seeded by (seed, round), and the state holds all
that a decision depends on besides the inputs, so a study resumed from the saved JSON makes the same choices.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from raysweep.analysis.tidy import metric_columns, require_columns
from raysweep.atomic import write_json_atomic
from raysweep.config.allocation import GREEDY, ProxyAllocation
from raysweep.search.acquisition import AnswerPosterior, answer_posterior, calibration_picks, pick, scores
from raysweep.search.proxy import Proxy, fit_proxy

BUDGET, SETTLED, EXHAUSTED = "budget", "settled", "exhausted"  # why an allocation is done


@dataclass(frozen=True)
class AllocationState:
    """Everything decided so far. `measured` is (id, gFID) in arrival order; `failed` tokenizers' trials are spent
    but give no gFID, nor do `stopped` ones' (every trial stopped at a cheap tier by ASHA: not measured); `batches`
    are the proposals in order (a multi-fidelity study runs each as one Tune experiment, found again by them on
    resume); `done` is None while allocating, else BUDGET, SETTLED or EXHAUSTED."""

    measured: tuple[tuple[str, float], ...] = ()
    pending: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    batches: tuple[tuple[str, ...], ...] = ()
    trials_spent: int = 0
    gpu_hours_spent: float = 0.0
    round: int = 0
    done: str | None = None

    def measured_ids(self) -> set[str]:
        return {i for i, _ in self.measured}

    def chosen_ids(self) -> set[str]:
        """Tokenizers ever proposed: measured, pending, failed or stopped."""
        return self.measured_ids() | set(self.pending) | set(self.failed) | set(self.stopped)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AllocationState:
        raw = json.loads(text)
        return cls(measured=tuple((str(i), float(y)) for i, y in raw["measured"]), pending=tuple(raw["pending"]),
                   failed=tuple(raw["failed"]), stopped=tuple(raw.get("stopped", ())),
                   batches=tuple(tuple(b) for b in raw.get("batches", ())), trials_spent=int(raw["trials_spent"]),
                   gpu_hours_spent=float(raw["gpu_hours_spent"]), round=int(raw["round"]), done=raw["done"])


def save_state(path: Path, state: AllocationState) -> None:
    """Atomically, so a crash mid-write leaves the previous state (the store's own rule)."""
    write_json_atomic(path, json.loads(state.to_json()))


def load_state(path: Path) -> AllocationState | None:
    return AllocationState.from_json(path.read_text()) if path.is_file() else None


@dataclass(frozen=True)
class Allocator:
    """The fixed inputs: tokenizer `ids`, their proxy `features` (N, p) and correlation `metric` (N,), known before
    any diffusion; `gpu_hours` (N,) the estimated diffusion GPU-hours of each tokenizer (all its trials); `cheap`
    the column of `features` holding a cheap tier's gFID (a backbone ladder's; None without one)."""

    spec: ProxyAllocation
    ids: tuple[str, ...]
    features: np.ndarray
    metric: np.ndarray
    trials_per_tokenizer: int
    gpu_hours: np.ndarray
    seed: int
    cheap: int | None = None
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.features.shape[0] != len(self.ids) or len(self.metric) != len(self.ids):
            raise ValueError(f"{len(self.ids)} tokenizers but features {self.features.shape}, metric "
                             f"{self.metric.shape}")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("tokenizer ids must be unique")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.ids)})

    @classmethod
    def create(cls, spec: ProxyAllocation, ids: list[str], features: np.ndarray, metric: np.ndarray,
               trials_per_tokenizer: int = 1, gpu_hours: np.ndarray | None = None, seed: int = 0,
               cheap: int | None = None) -> Allocator:
        hours = np.zeros(len(ids)) if gpu_hours is None else np.asarray(gpu_hours, dtype=float)
        return cls(spec, tuple(ids), np.asarray(features, dtype=float), np.asarray(metric, dtype=float),
                   trials_per_tokenizer, hours, seed, cheap)

    @classmethod
    def from_table(cls, spec: ProxyAllocation, tokenizers: pd.DataFrame, trials_per_tokenizer: int = 1,
                   gpu_hours: np.ndarray | None = None, seed: int = 0,
                   cheap_gfid: str | None = None) -> Allocator:
        """From one row per tokenizer (`tokenizer_id` and its latent/ and recon/ metric columns, e.g. the tidy
        table's tokenizer columns). Features: `spec.features`, default every latent/ and recon/ column with a value
        for every tokenizer, then the column `cheap_gfid` (a backbone ladder's cheap-tier gFID); the correlation metric:
        `acquisition.correlation_metric`, default the first feature. A tokenizer without a value for a named
        feature is refused (ValueError naming it)."""
        names = spec.features or [c for c in metric_columns(tokenizers, ("latent/", "recon/"))
                                  if np.isfinite(pd.to_numeric(tokenizers[c], errors="coerce")).all()]
        metric = spec.acquisition.correlation_metric or (names[0] if names else "")
        names = [*names, *([cheap_gfid] if cheap_gfid else [])]
        require_columns(tokenizers, ["tokenizer_id", *names, metric])
        values = tokenizers[[*names, metric]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        bad = tokenizers["tokenizer_id"][~np.isfinite(values).all(axis=1)].tolist()
        if bad or not names:
            raise ValueError(f"proxy features {names} need a finite value for every tokenizer; missing for {bad}")
        return cls.create(spec, [str(t) for t in tokenizers["tokenizer_id"]], values[:, :len(names)], values[:, -1],
                          trials_per_tokenizer, gpu_hours, seed, len(names) - 1 if cheap_gfid else None)

    @property
    def max_trials(self) -> int:
        return self.spec.budget.max_trials(len(self.ids) * self.trials_per_tokenizer)

    def start(self) -> AllocationState:
        return AllocationState()

    def _affordable(self, state: AllocationState, candidates: list[int]) -> list[int]:
        """The prefix of `candidates` the remaining budget pays for."""
        out, trials, hours = [], state.trials_spent, state.gpu_hours_spent
        cap_h = self.spec.budget.gpu_hours
        for i in candidates:
            trials += self.trials_per_tokenizer
            hours += float(self.gpu_hours[i])
            if trials > self.max_trials or (cap_h is not None and hours > cap_h + 1e-9):
                break
            out.append(i)
        return out

    def calibration(self) -> list[int]:
        """The rows measured first: quantiles of `calibration.by`; else, under a cheap tier, the `count` lowest
        cheap gFIDs (the target itself at low fidelity, so its direction needs no calibration and its favourites are
        the likeliest top-1: the cheap-tier replay's 30 % -> 25 % of brute force, benchmarks/RESULTS-allocation.md);
        else a D-optimal design over every feature."""
        cal = self.spec.calibration
        if cal.by and self.spec.features:
            return calibration_picks(self.features, cal.count, self.spec.features.index(cal.by))
        if self.cheap is not None:
            return [int(i) for i in np.argsort(self.features[:, self.cheap], kind="stable")[:cal.count]]
        return calibration_picks(self.features, cal.count)

    def fit(self, state: AllocationState) -> Proxy:
        """The proxy refitted on every measured tokenizer."""
        rows = [self.index[i] for i, _ in state.measured]
        return fit_proxy(self.features[rows], np.array([y for _, y in state.measured]), self.features)

    def posterior(self, state: AllocationState) -> AnswerPosterior:
        """The answer's posterior after this state's measurements (seeded by the round, so reproducible)."""
        acq = self.spec.acquisition
        rng = np.random.default_rng([self.seed, state.round])
        measured = {self.index[i]: y for i, y in state.measured}
        return answer_posterior(self.fit(state), self.features, measured, self.metric, acq.top_k, acq.draws, rng)

    def propose(self, state: AllocationState) -> tuple[AllocationState, list[str]]:
        """The next tokenizers to launch (spending their budget), or [] with `done` set when nothing more should."""
        if state.done:
            return state, []
        taken = state.chosen_ids()
        open_rows = [i for i, t in enumerate(self.ids) if t not in taken]
        if not open_rows:
            return (replace(state, done=EXHAUSTED) if not state.pending else state), []
        cal = self.spec.calibration
        if len(taken) < cal.count:
            wanted = [i for i in self.calibration() if self.ids[i] not in taken]
            wanted += [i for i in open_rows if i not in wanted]  # a failed calibration pick is replaced in order
            chosen = wanted[:cal.count - len(taken)]
        elif state.pending:
            return state, []  # acquisition waits for the results it depends on
        else:
            acq, stop = self.spec.acquisition, self.spec.stop
            post = None if stop.never and acq.rule == GREEDY else self.posterior(state)
            if post is not None and not stop.never and post.settled(stop.confidence, stop.r_sd):
                return replace(state, done=SETTLED), []
            if acq.rule == GREEDY:  # the lowest predicted gFIDs: wins the replays (benchmarks/RESULTS-allocation.md)
                rows = np.array(open_rows)
                chosen = [int(i) for i in rows[np.argsort(self.fit(state).predict(self.features[rows]).mean,
                                                          kind="stable")[:acq.batch]]]
            else:
                if post is None:  # only greedy acquisition with the stop rule off skips the posterior
                    raise RuntimeError(f"acquisition rule '{acq.rule}' ran without the posterior")
                chosen = pick(scores(post, acq.top_k, acq.top_weight, acq.correlation_weight), acq.batch)
        affordable = self._affordable(state, chosen)
        if not affordable:
            return (replace(state, done=BUDGET) if not state.pending else state), []
        ids = [self.ids[i] for i in affordable]
        return replace(state, pending=state.pending + tuple(ids), batches=state.batches + (tuple(ids),),
                       trials_spent=state.trials_spent + self.trials_per_tokenizer * len(ids),
                       gpu_hours_spent=state.gpu_hours_spent + float(self.gpu_hours[affordable].sum()),
                       round=state.round + 1), ids

    def record(self, state: AllocationState, tokenizer_id: str, gfid: float | None,
               stopped: bool = False) -> AllocationState:
        """A pending tokenizer's result: its gFID (best CFG, averaged over its trials), or None if they failed or
        (`stopped`) ASHA stopped every one of them at a cheap tier."""
        if tokenizer_id not in state.pending:
            raise ValueError(f"tokenizer '{tokenizer_id}' is not pending; pending: {list(state.pending)}")
        pending = tuple(t for t in state.pending if t != tokenizer_id)
        if stopped and gfid is None:
            return replace(state, pending=pending, stopped=state.stopped + (tokenizer_id,))
        if gfid is None or not np.isfinite(gfid):
            return replace(state, pending=pending, failed=state.failed + (tokenizer_id,))
        return replace(state, pending=pending, measured=state.measured + ((tokenizer_id, float(gfid)),))
