"""A local Ray cluster for a test module: Ray workers cannot import a module pytest loaded from `tests/`, so a module
whose own functions run in Ray tasks or Tune trials has them pickled by value."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import ray
from ray import cloudpickle


@contextmanager
def local_ray(num_cpus: int = 2, by_value: ModuleType | None = None) -> Iterator[None]:
    if by_value is not None:
        cloudpickle.register_pickle_by_value(by_value)
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
