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
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


class _StudyLogFile(logging.FileHandler):
    """Opened at the first record, its folder made then: a study refused as bad input before anything logs leaves
    no `logs/` folder behind."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


@contextmanager
def route_logs(study_root: str | Path, verbose: bool = False) -> Iterator[Path]:
    """While open, send the libraries' logs to `<study_root>/logs/raysweep.log` (appended) and, unless `verbose`,
    off the terminal; yields the file's path for the caller to print. On exit every logger, handler filter,
    environment variable and the warnings capture is as it was (the CLI runs in-process in tests and notebooks)."""
    path = Path(study_root) / LOG_FILE
    saved_env = {k: os.environ.get(k) for k in ("RAY_DATA_LOGGING_CONFIG", "RAY_DATA_DISABLE_PROGRESS_BARS")}
    with tempfile.TemporaryDirectory(prefix="raysweep-logging-") as tmp:
        config = Path(tmp) / "ray_data_logging.yaml"  # read by Ray Data at import and per dataset, not kept
        config.write_text(yaml.safe_dump(RAY_DATA_CONFIG))
        os.environ["RAY_DATA_LOGGING_CONFIG"] = str(config)
        if not verbose:
            os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
        import mlflow  # noqa: F401  (their imports install the console handlers filtered below)
        import ray  # noqa: F401

        if "ray.data" in sys.modules:  # already configured from the old environment: apply ours now
            from ray.data import DataContext
            from ray.data._internal.logging import configure_logging

            configure_logging()
            if not verbose:
                DataContext.get_current().enable_progress_bars = False
        logging.captureWarnings(not verbose)
        handler = _StudyLogFile(path, encoding="utf-8", delay=True)
        handler.set_name(HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        saved: list[tuple[logging.Logger, bool, list[logging.Handler]]] = []
        for name in LOGGERS:
            logger = logging.getLogger(name)
            consoles = [h for h in logger.handlers if _is_console(h)]
            saved.append((logger, logger.propagate, consoles))
            for console in consoles:
                (console.removeFilter if verbose else console.addFilter)(QUIET)
            logger.addHandler(handler)
            logger.propagate = False  # as MLflow and Ray set theirs; `py.warnings` would reach the root logger
        try:
            yield path
        finally:
            for logger, propagate, consoles in saved:
                logger.removeHandler(handler)
                logger.propagate = propagate
                for console in consoles:
                    console.removeFilter(QUIET)
            handler.close()
            logging.captureWarnings(False)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
