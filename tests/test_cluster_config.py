"""The cluster launcher files pass Ray's own schema check and wire the services the way the README promises."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FILES = ("cluster.yaml", "cluster-onprem.yaml")


def _prepared(name: str) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(yaml.safe_load((ROOT / name).read_text())))
    validate_config(config)
    return config


def _commands(config: dict, *keys: str) -> str:
    return "\n".join(c for key in keys for c in config.get(key, []))


@pytest.mark.parametrize("name", FILES)
def test_cluster_file_passes_ray_schema_and_wires_services(name: str) -> None:
    config = _prepared(name)
    head = _commands(config, "head_start_ray_commands")
    workers = _commands(config, "worker_start_ray_commands")
    assert "mlflow server" in head and "--artifacts-destination /mnt/raysweep/" in head
    assert "--backend-store-uri sqlite:////" in head or "--backend-store-uri postgresql://" in head
    assert "--dashboard-host=127.0.0.1" in head
    everything = _commands(config, "head_start_ray_commands", "worker_start_ray_commands", "setup_commands")
    assert "0.0.0.0" not in everything  # private network only
    for commands in (head, workers):
        assert "MLFLOW_TRACKING_URI=http://" in commands and "RAYSWEEP_STORAGE=/mnt/raysweep/" in commands
    assert "mount" in _commands(config, "initialization_commands")  # shared storage on every node


def test_aws_head_has_no_gpu_and_workers_do() -> None:
    nodes = _prepared("cluster.yaml")["available_node_types"]
    assert nodes["head"]["resources"].get("GPU", 0) == 0 and nodes["head"]["max_workers"] == 0
    assert nodes["gpu_worker"]["resources"]["GPU"] >= 1 and nodes["gpu_worker"]["max_workers"] >= 1


def test_onprem_uses_local_provider() -> None:
    raw = yaml.safe_load((ROOT / "cluster-onprem.yaml").read_text())
    assert raw["provider"]["type"] == "local" and "available_node_types" not in raw
    assert raw["provider"]["head_ip"] not in raw["provider"]["worker_ips"]


def test_schema_check_rejects_unknown_keys() -> None:
    """Guards the test above: the validator really is strict."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["hed_node_type"] = "head"
    with pytest.raises(Exception, match="hed_node_type"):
        validate_config(prepare_config(config))
