"""The base of every typed block of a study file: unknown keys, NaN and lax types refused."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    """Base: unknown keys are errors, values are validated on assignment too, NaN/inf are refused, and types are
    strict: `true` is not an integer and `"3"` not a number (pydantic's lax mode would take both, so the study
    would run something its author did not write). Numpy scalars (Ray Tune's draws) count as Python numbers."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False,
                              strict=True)

    @model_validator(mode="before")
    @classmethod
    def _python_scalars(cls, data: Any) -> Any:
        import numpy as np

        if not isinstance(data, dict):
            return data
        return {k: v.item() if isinstance(v, np.generic) else v for k, v in data.items()}
