"""cluster.yaml passes Ray's own cluster-config validation (the checks `ray up` runs first),
and describes what docs/cluster.md promises: a CPU head, an autoscaling GPU group from zero,
token auth on every node, the dashboard on the head's loopback, shared experiment storage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_ray_validation(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))  # raises on any schema or consistency error


def test_ray_validation_catches_a_broken_config(config):
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = yaml.safe_load(yaml.safe_dump(config))
    broken["available_node_types"]["gpu_worker"]["node_cofnig"] = {}  # a typo
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_head_is_cpu_only_and_gpu_workers_scale_from_zero(config):
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}
    gpu = nodes["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))


def test_every_node_runs_with_token_auth_and_the_project_image(config):
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "~/.ray/auth_token" in config["file_mounts"].values()
    # colorize comes in the image (the Dockerfile; tests/test_dockerfile.py checks the tags):
    # nothing installs it when a node starts, and the source tree is not copied over.
    docker = config["docker"]
    assert docker["head_image"].rsplit("/", 1)[-1].startswith("colorize:")
    assert docker["worker_image"].rsplit("/", 1)[-1].endswith("-gpu")
    setup = config["setup_commands"] + config["head_setup_commands"] + config["worker_setup_commands"]
    assert not [c for c in setup if "colorize" in c], setup
    assert "." not in config["file_mounts"].values()
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--dashboard-port=8265" in head_start
    assert any("/mnt/shared" in option for option in config["docker"]["run_options"])
