"""Where library logs go during a study: a file in the study directory, and the terminal only with `-v`.

Ray, Ray Tune and Ray Train log through the `ray` logger; MLflow owns `mlflow`, `sqlalchemy.engine`, `alembic` and
`huey` (mlflow.utils.logging_utils). Ray Data is the odd one: at `import ray.data` (and again for every dataset a
worker runs) it re-reads `RAY_DATA_LOGGING_CONFIG` and replaces the `ray.data` logger's handlers with what that YAML
names, its default being a console handler. So its config here names no handler and lets `ray.data` propagate to
`ray`; the variable reaches Ray workers too, which inherit the driver's environment. `RAY_DATA_DISABLE_PROGRESS_BARS`
(read once, at import of ray.data.context) turns its progress bars off. Python warnings go to the file as well.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import yaml

LOGGERS = ("ray", "mlflow", "sqlalchemy.engine", "alembic", "huey", "py.warnings")
HANDLER_NAME = "raysweep-study-log"
LOG_FILE = "logs/raysweep.log"
RAY_DATA_CONFIG = {"loggers": {"ray.data": {"level": "INFO", "handlers": [], "propagate": True}}}


class _Quiet(logging.Filter):
    """Put on the libraries' own console handlers while not verbose (and taken off with `-v`), so they stay in
    place for whoever expects them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


QUIET = _Quiet()


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def route_logs(study_root: str | Path, verbose: bool = False) -> Path:
    """Send the libraries' logs to `<study_root>/logs/raysweep.log` (appended) and, unless `verbose`, off the
    terminal; returns the file's path for the caller to print. Idempotent: calling it again replaces its handler."""
    path = Path(study_root) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    config = path.parent / "ray_data_logging.yaml"
    config.write_text(yaml.safe_dump(RAY_DATA_CONFIG))
    os.environ["RAY_DATA_LOGGING_CONFIG"] = str(config)
    if not verbose:
        os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    import mlflow  # noqa: F401  (their imports install the console handlers replaced below)
    import ray  # noqa: F401

    if "ray.data" in sys.modules:  # already configured from the old environment: apply ours now
        from ray.data import DataContext
        from ray.data._internal.logging import configure_logging

        configure_logging()
        if not verbose:
            DataContext.get_current().enable_progress_bars = False
    logging.captureWarnings(not verbose)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if old.get_name() == HANDLER_NAME:
                logger.removeHandler(old)
                old.close()
            elif _is_console(old):
                (old.removeFilter if verbose else old.addFilter)(QUIET)
        logger.addHandler(handler)
        logger.propagate = False  # as MLflow and Ray set theirs; `py.warnings` would reach the root logger
    return path
