"""The base of the regularizers' `Params` models: pydantic, paper defaults, unknown keys rejected. Apart from the
interface (`base.py`) so that training a tokenizer with a parameter-free regularizer needs no pydantic."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
