"""`diffusion.allocation` and `tokenizers.search` of a study file: typed, unknown keys refused.

    diffusion:
      allocation: all                       # default: every tokenizer gets every diffusion trial (brute force)
      allocation:
        mode: proxy
        budget: {trials: 0.3, gpu_hours: 500}   # a count (int) or fraction (float <= 1) of diffusion trials
        calibration: {count: 4}                  # first trials span the proxy's range
        acquisition: {rule: greedy, batch: 1}   # or information (top_k, weights, draws)
        fidelity: {grace_fraction: 0.25, reduction_factor: 3}
        fidelity: {backbone: SiT-T}             # a backbone ladder: SiT-T on every tokenizer, the study's own
                                                # backbone(s) on those the allocator promotes (with grace_fraction
                                                # etc. as well: ASHA on the promoted runs)

`load_study` parses both once, from the raw `diffusion` / `tokenizers` mappings, into the typed fields
`StudySpec.allocation` and `StudySpec.search` (the resolved trials, and every trial key, are exactly those of a study
without these blocks); the checks that need the rest of the study are in `config/checks.py`.
"""
from __future__ import annotations

import re
from typing import Any, Final, Literal

from pydantic import Field, field_validator, model_validator

from raysweep.config.errors import ConfigError, allowed
from raysweep.config.strict import Strict
from raysweep.config.validate import validate_model

ALLOCATION_MODES = ("all", "proxy")
LADDER: Final = "ladder"  # ProxyAllocation's field for the cheap tier of a backbone ladder
GREEDY: Final = "greedy"  # acquisition.rule: the lowest predicted gFID next
FIDELITY_KEY = "diffusion.allocation.fidelity"
CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_/@.\-]+)\s*(>=|<=)\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")


class BudgetSpec(Strict):
    """Diffusion compute the proxy mode may spend: `trials` is a count (int) or a fraction (float in (0, 1]) of the
    brute-force diffusion trials; `gpu_hours` caps the estimated GPU-hours. Either or both; none = all trials.
    Under a backbone ladder both count the target backbone's trials: the cheap tier runs on every tokenizer."""

    trials: int | float | None = None
    gpu_hours: float | None = Field(None, gt=0)

    @field_validator("trials")
    @classmethod
    def _count_or_fraction(cls, v: int | float | None) -> int | float | None:
        if v is None:
            return v
        if isinstance(v, bool) or v <= 0 or (isinstance(v, float) and v > 1):
            raise ValueError(f"must be a positive count (int) or a fraction in (0, 1] (float), got {v!r}")
        return v

    def max_trials(self, total: int) -> int:
        """The trial cap out of `total` brute-force diffusion trials."""
        if self.trials is None:
            return total
        return min(total, int(self.trials) if isinstance(self.trials, int) else max(1, round(self.trials * total)))


class CalibrationSpec(Strict):
    """The first `count` tokenizers measured: a D-optimal design for the proxy over all its features (each pick the
    tokenizer the proxy fitted on the earlier picks is least sure of), or with `by` quantiles of that one feature."""

    count: int = Field(4, ge=2)
    by: str | None = None


class AcquisitionSpec(Strict):
    """How the next tokenizer is chosen after calibration: `greedy` (default), the `batch` lowest predicted gFIDs;
    `information`, the expected reduction of uncertainty about the top-`top_k` set and about the metric-gFID
    correlations (`weights` of the two answers), estimated from `draws` posterior draws. In replays greedy finds the
    top-1 with less compute than information (the replay tables, every policy and case:
    benchmarks/RESULTS-allocation.md); information gets the correlation from fewer runs."""

    rule: Literal["greedy", "information"] = GREEDY
    top_k: int = Field(1, ge=1)
    batch: int = Field(1, ge=1)
    draws: int = Field(400, ge=50)
    top_weight: float = Field(1.0, ge=0)
    correlation_weight: float = Field(1.0, ge=0)
    correlation_metric: str | None = None  # default: the first proxy feature

    @model_validator(mode="after")
    def _some_weight(self) -> AcquisitionSpec:
        if self.top_weight == 0 and self.correlation_weight == 0:
            raise ValueError("top_weight and correlation_weight cannot both be 0")
        return self


class StopSpec(Strict):
    """The answer is settled when every tokenizer's top-k membership probability is within `1 - confidence` of 0 or 1
    and the posterior sd of the correlation is below `r_sd`; `never` spends the whole budget."""

    confidence: float = Field(0.95, gt=0.5, lt=1)
    r_sd: float = Field(0.05, gt=0)
    never: bool = False


class FidelitySpec(Strict):
    """Multi-fidelity gFID: every selected trial runs to `grace_fraction` of its steps (and samples) at the cheap rung;
    successive halving by `reduction_factor` (ASHA) promotes the best toward the full tier."""

    grace_fraction: float = Field(0.25, gt=0, lt=1)
    sample_fraction: float = Field(0.25, gt=0, le=1)  # of evaluation.num_samples scored below the full tier
    reduction_factor: int = Field(3, ge=2)


class ProxyAllocation(Strict):
    """`diffusion.allocation` in proxy mode."""

    mode: Literal["proxy"] = "proxy"
    features: list[str] | None = None  # latent/recon metric keys; default: every latent/ and recon/ column
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    acquisition: AcquisitionSpec = Field(default_factory=AcquisitionSpec)
    stop: StopSpec = Field(default_factory=StopSpec)
    fidelity: FidelitySpec | None = None  # ASHA's tiers of the (target) diffusion trials
    ladder: dict[str, Any] | None = None  # the cheap tier's fields (`fidelity.backbone`...): `StudySpec.ladder_trial`
    level: float = Field(0.9, gt=0, lt=1)  # of the reported prediction intervals

    @model_validator(mode="before")
    @classmethod
    def _ladder_of_fidelity(cls, data: Any) -> Any:
        """`fidelity` with a `backbone` names a backbone ladder: its FidelitySpec keys (if any) are ASHA's tiers of
        the target trials, the others (backbone, patch_size, steps, ... of a diffusion trial) the cheap tier's."""
        if not isinstance(data, dict):
            return data
        if LADDER in data:
            raise ValueError(f"unknown key '{LADDER}'; a cheap backbone is set as fidelity.backbone")
        fidelity = data.get("fidelity")
        if not isinstance(fidelity, dict) or "backbone" not in fidelity:
            return data
        tiers = {k: v for k, v in fidelity.items() if k in FidelitySpec.model_fields}
        return {**data, "fidelity": tiers or None, LADDER: {k: v for k, v in fidelity.items() if k not in tiers}}

    @field_validator("features")
    @classmethod
    def _metric_keys(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or any(not f.startswith(("latent/", "recon/")) for f in v)):
            raise ValueError(f"must be a non-empty list of latent/ or recon/ metric keys, got {v!r}")
        return v

    @model_validator(mode="after")
    def _calibration_by_a_feature(self) -> ProxyAllocation:
        by = self.calibration.by
        if by is not None and by not in (self.features or []):
            raise ValueError(f"calibration.by must be one of the listed features; allowed: "
                             f"{allowed(self.features or [])}")
        return self


class TokenizerSearch(Strict):
    """`tokenizers.search`: a Ray Tune search over the tokenizer block's domains (e.g. `params: search`);
    `num_samples` tokenizers are trained, and the best `confirm` feasible ones get the study's diffusion trials."""

    objective: str
    mode: Literal["min", "max"] = "min"
    algorithm: Literal["optuna", "random"] = "optuna"
    num_samples: int = Field(8, ge=1)
    constraint: str | None = None  # "recon/psnr >= 24"
    confirm: int = Field(2, ge=1)  # kept small: each confirmed tokenizer costs all of the study's diffusion trials

    @field_validator("constraint")
    @classmethod
    def _parse(cls, v: str | None) -> str | None:
        if v is not None and not CONSTRAINT.match(v):
            raise ValueError(f"must read '<metric> >= <number>' or '<metric> <= <number>', got {v!r}")
        return v

    @model_validator(mode="after")
    def _confirm_at_most_searched(self) -> TokenizerSearch:
        if self.confirm > self.num_samples:
            raise ValueError(f"confirm ({self.confirm}) cannot exceed num_samples ({self.num_samples})")
        return self

    def key(self) -> str:
        """What changes the search's trials (not `confirm`, which only picks among them)."""
        from raysweep.hashing import config_hash

        return config_hash(self.model_dump(exclude={"confirm"}))

    def constraint_parts(self) -> tuple[str, str, float] | None:
        """(metric, '>=' or '<=', bound) of the constraint, if any."""
        match = CONSTRAINT.match(self.constraint) if self.constraint else None
        return (match.group(1), match.group(2), float(match.group(3))) if match else None


def parse_allocation(raw: Any, source: str = "<study>") -> ProxyAllocation | None:
    """`all` (or absent) -> None; a proxy mapping -> `ProxyAllocation`; anything else a one-line ConfigError."""
    key = "diffusion.allocation"
    if raw is None or raw == "all":
        return None
    if raw == "proxy":
        return ProxyAllocation()
    if not isinstance(raw, dict):
        raise ConfigError(source, key, f"must be one of {allowed(ALLOCATION_MODES)} or a mapping with 'mode', "
                                       f"got {raw!r}")
    mode = raw.get("mode", "proxy")
    if mode not in ALLOCATION_MODES:
        raise ConfigError(source, f"{key}.mode", f"unknown mode {mode!r}; allowed: {allowed(ALLOCATION_MODES)}")
    if mode == "all":
        if set(raw) != {"mode"}:
            raise ConfigError(source, key, "mode 'all' takes no other keys")
        return None
    return validate_model(ProxyAllocation, raw, source, key)


def parse_tokenizer_search(raw: Any, source: str = "<study>") -> TokenizerSearch | None:
    return None if raw is None else validate_model(TokenizerSearch, raw, source, "tokenizers.search")

