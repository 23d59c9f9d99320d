"""cluster.yaml passes the checks `ray up` makes before it talks to AWS, and broken copies fail them.

`ray up` runs, in order (ray/autoscaler/_private/commands.py, _bootstrap_config): prepare_config (merges
ray/autoscaler/aws/defaults.yaml, a file in the ray package), then the AWS provider's
fillout_available_node_types_resources (asks EC2 for instance sizes: network), validate_config (the JSON
schema ray/autoscaler/ray-schema.json plus cross-field checks), then bootstrap_config (IAM, key pair,
subnets: network). The offline path is prepare_config + validate_config; skipping the resource fill-out
loses nothing, because cluster.yaml states every node type's resources explicitly.
"""

import copy
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from tune.cluster import NODE_TYPE_LABEL
from tune.ray_internals import check_cluster_config
from tune.run import MIN_JOB_STOP_WAIT_S

ROOT = Path(__file__).resolve().parents[1]
# The platforms of the image's Ubuntu 22.04 (glibc 2.35) that PyPI's x86-64 wheels are tagged with.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@pytest.fixture
def config(monkeypatch) -> dict:
    def no_network(*args, **kwargs):
        raise AssertionError("the cluster config check tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def check(config: dict) -> dict:
    """What `ray up` checks before contacting AWS; returns the prepared config."""
    return check_cluster_config(copy.deepcopy(config))


def cluster_python() -> str:
    """The Python of the cluster's nodes, from the tag of its Docker image (rayproject/ray:X-py311-gpu)."""
    image = yaml.safe_load((ROOT / "cluster.yaml").read_text())["docker"]["image"]
    found = re.search(r"-py3(\d+)", image)
    assert found, f"cluster.yaml's image {image} names no Python (a tag with -py3XX)"
    return f"3.{found.group(1)}"


def pins() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def test_cluster_yaml_passes_rays_checks(config):
    prepared = check(config)
    types = prepared["available_node_types"]
    head, gpu = types["head"], types["gpu"]
    assert prepared["provider"]["type"] == "aws"
    assert head["resources"]["GPU"] == 0 and head["max_workers"] == 0  # no training worker on the head
    assert gpu["resources"] == {"CPU": 4, "GPU": 1} and gpu["node_config"]["InstanceType"] == "g5.xlarge"
    assert 0 <= gpu["min_workers"] <= gpu["max_workers"] <= prepared["max_workers"]
    assert gpu["node_config"]["ImageId"] == head["node_config"]["ImageId"]  # one AMI to edit
    assert "IamInstanceProfile" in gpu["node_config"]  # workers read data and write checkpoints on S3 themselves
    # Every node type is labelled with its name, so the sweep's pre-flight can check each (tune/cluster.py).
    assert all(node_type["labels"] == {NODE_TYPE_LABEL: name} for name, node_type in types.items())
    # Our setup commands replace Ray's defaults (which would pip-install a nightly Ray wheel).
    assert any("pip install -q -e ~/mixem" in cmd for cmd in prepared["setup_commands"])
    assert not any("ray-wheels" in cmd for cmd in prepared["head_setup_commands"])


def test_every_node_runs_the_pinned_ray_in_an_image_whose_python_the_pins_support(config):
    image = config["docker"]["image"]
    assert image.startswith(f"rayproject/ray:{ray.__version__}-py") or "EDIT" in image  # the laptop's Ray
    python = cluster_python()
    assert any(f"python{python}" in cmd for cmd in config["setup_commands"])  # and the nodes say so at setup
    assert f"FROM {image}" in (ROOT / "docker" / "Dockerfile").read_text()  # the baked image starts from it
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low, high = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", spec).groups()
    assert int(low) <= int(python.split(".")[1]) < int(high), f"requires-python {spec} excludes {python}"


def test_the_head_keeps_its_dashboard_local_and_gives_a_stopped_job_time_to_save(config):
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start  # reached through `ray dashboard cluster.yaml` only
    wait = re.search(r"RAY_JOB_STOP_WAIT_TIME_S=(\d+) ray start --head", start)
    assert wait and int(wait.group(1)) >= MIN_JOB_STOP_WAIT_S


def _dry_run(python: str, requirements: list[str], *extra: str) -> subprocess.CompletedProcess:
    platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--python-version", python, *platforms, "--only-binary=:all:", *extra, *requirements],
                          capture_output=True, text=True, timeout=600)


def test_every_pinned_package_has_a_wheel_for_the_cluster_python():
    """What `pip install -e ~/mixem` resolves on a node, from wheels alone (no compiler there). torch and
    torchvision are checked without their CUDA dependencies, which PyPI's index may lack here."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=10).close()
    except OSError:
        pytest.skip("needs PyPI")
    python = cluster_python()
    heavy = [pin for pin in pins() if pin.startswith(("torch==", "torchvision=="))]
    done = _dry_run(python, [pin for pin in pins() if pin not in heavy])
    assert done.returncode == 0, f"no wheels for Python {python}:\n{done.stderr[-3000:]}"
    done = _dry_run(python, heavy, "--no-deps")
    assert done.returncode == 0, f"no torch wheels for Python {python}:\n{done.stderr[-3000:]}"
    # The check can fail: the same pins have no wheels for Python 3.10, which requires-python excludes.
    assert _dry_run("3.10", [pin for pin in pins() if pin.startswith("numpy==")]).returncode != 0


def test_file_mounts_point_at_project_files(config):
    missing = [local for local in config["file_mounts"].values() if not (ROOT / local).exists()]
    assert not missing, f"cluster.yaml mounts paths that do not exist in the repository: {missing}"


def test_cluster_runs_the_pinned_ray():
    # A laptop whose Ray differs from the cluster's cannot drive it; both come from the pyproject pin.
    assert f"ray[default,tune,train]=={ray.__version__}" in pins()


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
