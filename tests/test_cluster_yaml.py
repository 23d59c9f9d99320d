"""cluster.yaml passes the checks `ray up` makes before it talks to AWS, and broken copies fail them.

`ray up` runs, in order (ray/autoscaler/_private/commands.py, _bootstrap_config): prepare_config (merges
ray/autoscaler/aws/defaults.yaml, a file in the ray package), then the AWS provider's
fillout_available_node_types_resources (asks EC2 for instance sizes: network), validate_config (the JSON
schema ray/autoscaler/ray-schema.json plus cross-field checks), then bootstrap_config (IAM, key pair,
subnets: network). The offline path is prepare_config + validate_config; skipping the resource fill-out
loses nothing, because cluster.yaml states every node type's resources explicitly.
"""

import copy
import socket
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config(monkeypatch) -> dict:
    def no_network(*args, **kwargs):
        raise AssertionError("the cluster config check tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def check(config: dict) -> dict:
    """What `ray up` checks before contacting AWS; returns the prepared config."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_checks(config):
    prepared = check(config)
    head, gpu = prepared["available_node_types"]["head"], prepared["available_node_types"]["gpu"]
    assert prepared["provider"]["type"] == "aws"
    assert head["resources"]["GPU"] == 0 and head["max_workers"] == 0  # no training worker on the head
    assert gpu["resources"] == {"CPU": 4, "GPU": 1} and gpu["node_config"]["InstanceType"] == "g5.xlarge"
    assert 0 <= gpu["min_workers"] <= gpu["max_workers"] <= prepared["max_workers"]
    assert gpu["node_config"]["ImageId"] == head["node_config"]["ImageId"]  # one AMI to edit
    assert "IamInstanceProfile" in gpu["node_config"]  # workers write checkpoints to S3 themselves
    # Our setup commands replace Ray's defaults (which would pip-install a nightly Ray wheel).
    assert any("pip install -q -e ~/mixem" in cmd for cmd in prepared["setup_commands"])
    assert not any("ray-wheels" in cmd for cmd in prepared["head_setup_commands"])


def test_file_mounts_point_at_project_files(config):
    missing = [local for local in config["file_mounts"].values() if not (ROOT / local).exists()]
    assert not missing, f"cluster.yaml mounts paths that do not exist in the repository: {missing}"


def test_cluster_runs_the_pinned_ray():
    # A laptop whose Ray differs from the cluster's cannot drive it; both come from the pyproject pin.
    assert f'"ray[default,tune,train]=={ray.__version__}"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    "break_it, error",
    [
        (lambda c: c.update(max_worker=4), jsonschema.ValidationError),  # misspelt top-level field
        (lambda c: c.update(max_workers="four"), jsonschema.ValidationError),
        (lambda c: c["available_node_types"]["gpu"].update(min_worker=1), jsonschema.ValidationError),
        (lambda c: c["available_node_types"]["gpu"]["resources"].update(GPU=0.5), jsonschema.ValidationError),
        (lambda c: c["auth"].update(ssh_key="~/.ssh/id_rsa"), jsonschema.ValidationError),
        (lambda c: c.update(head_node_type="cpu"), ValueError),
        (lambda c: c["available_node_types"]["gpu"].update(min_workers=5), ValueError),  # > max_workers
    ],
)
def test_broken_copies_are_rejected(config, break_it, error):
    broken = copy.deepcopy(config)
    break_it(broken)
    with pytest.raises(error):
        check(broken)
