"""Study configuration: typed specs, YAML loading, search spaces, stable hashes. Imports no torch or ray."""
from raysweep.config.errors import ConfigError
from raysweep.config.loader import load_study, parse_study
from raysweep.config.preflight import preflight
from raysweep.config.spec import (
    DatasetSpec,
    DiffusionTrial,
    EvaluationSpec,
    MetricsSpec,
    StudySpec,
    TokenizerTrial,
)
from raysweep.hashing import config_hash, flatten

__all__ = [
    "ConfigError", "DatasetSpec", "DiffusionTrial", "EvaluationSpec", "MetricsSpec", "StudySpec",
    "TokenizerTrial", "config_hash", "flatten", "load_study", "parse_study", "preflight",
]
