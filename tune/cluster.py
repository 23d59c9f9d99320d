"""Starting or joining Ray, and sizing a sweep for the cluster it runs on.

On a cluster the nodes up when a sweep starts say little: an autoscaling cluster may have none of
its GPU nodes yet. So GPUs per worker and the number of trials at once come from what the
cluster can grow to, its node types: the autoscaler's cluster config in the GCS (autoscaler v2,
KubeRay), else the ``~/ray_bootstrap_config.yaml`` that ``ray up`` leaves on the head node.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import ray

from mixem.errors import MixemError
from tune.trial import TrialResources

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
# Ray Train's controller polls its workers every 2 s by default: a trial's reports and its end reach
# Tune up to 2 s late. Polling every half second costs the controller next to nothing.
TRAIN_SETTINGS = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
# File systems that every node of a cluster can mount: a local --storage on one of them is shared.
SHARED_FILE_SYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "glusterfs", "ceph", "fuse.")


def start_ray(address: str | None, *, verbose: bool, **init_kwargs) -> None:
    """Join ``address``, or start a local Ray whose workers can import this project.

    Every worker of the job gets RAY_API_SERVER_ADDRESS, the dashboard's URL: Train frees the
    placement group of a trial that ASHA stopped from a detached actor that asks the dashboard's
    state API whether the trial's controller is gone, and without that variable the API looks for
    "the" Ray on the machine; with two (two users, or tests beside a sweep) it fails, the stopped
    trials' CPUs are never freed and the sweep waits forever.

    Unless ``verbose``, what workers print and Ray's own warnings stay in Ray's logs: the console
    shows Tune's progress table and this project's messages.
    """
    env_vars = dict(TRAIN_SETTINGS)
    if address is None:
        # Workers started by a local Ray inherit this environment; a cluster installs the project.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        port = free_port()
        init_kwargs.update(include_dashboard=True, dashboard_port=port)
        # Inherited rather than a runtime_env: actors without a runtime_env of their own then start in
        # the worker processes Ray keeps ready, instead of new ones (each several seconds on 2 cores).
        # No preemption on one machine: Ray Train's preemption watcher would be one more process per trial.
        os.environ.update(env_vars, RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{port}",
                          RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="0")
        runtime_env = None
    else:
        api_server = dashboard_url(address)
        if api_server:
            env_vars["RAY_API_SERVER_ADDRESS"] = api_server
        runtime_env = {"env_vars": env_vars}
    if not verbose:
        logging.getLogger("ray").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"ray\..*")
    # "local": a new Ray of our own. (None would join any cluster `ray start` left on this machine.)
    ray.init(address=address or "local", runtime_env=runtime_env, log_to_driver=verbose,
             logging_level="INFO" if verbose else "ERROR", **init_kwargs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dashboard_url(address: str) -> str | None:
    """The dashboard URL of the cluster at ``address``, or None (with a warning) if it has none."""
    from ray.dashboard.utils import get_address_for_submission_client

    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:
        try:  # Ray would retry an unreachable HOST:PORT forever
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as error:
            raise MixemError(f"No Ray cluster answers at --address {address} ({error}); check the address, or "
                             "leave --address out to run locally.") from None
    try:
        return get_address_for_submission_client(address)
    except ConnectionError as error:
        raise MixemError(f"No Ray cluster to join at --address {address} ({error}); start one (`ray up "
                         "cluster.yaml`, `ray start --head`) or leave --address out to run locally.") from None
    except Exception as error:  # e.g. a cluster without the dashboard: only the cleanup of stopped trials suffers
        print(f"warning: no dashboard found for the Ray cluster at {address} ({error}); placement groups of "
              "trials that ASHA stops may not be freed (install ray[default] on the cluster).", file=sys.stderr)
        return None


@dataclass(frozen=True)
class Capacity:
    """The most CPUs and GPUs the cluster can have at once; ``known`` is False when only the nodes up
    now could be counted (no autoscaler config was found)."""

    cpus: float
    gpus: float
    known: bool


def cluster_capacity() -> Capacity:
    """What the cluster can grow to (see the module docstring), else what it has now."""
    from ray._private.state import state  # the sizing Ray Data does for its own autoscaling

    most = state.get_max_resources_from_cluster_config()
    if most:
        return Capacity(float(most.get("CPU", 0)), float(most.get("GPU", 0)), True)
    bootstrap = BOOTSTRAP_CONFIG.expanduser()
    if bootstrap.is_file():
        import yaml

        config = yaml.safe_load(bootstrap.read_text()) or {}
        types, cpus, gpus = config.get("available_node_types") or {}, 0.0, 0.0
        for name, node_type in types.items():
            count = 1 if name == config.get("head_node_type") else node_type.get("max_workers", 0)
            resources = node_type.get("resources") or {}
            cpus += count * float(resources.get("CPU", 0))
            gpus += count * float(resources.get("GPU", 0))
        if types:
            return Capacity(cpus, gpus, True)
    now = ray.cluster_resources()
    return Capacity(float(now.get("CPU", 0)), float(now.get("GPU", 0)), False)


def trial_resources(workers: int, cpus_per_worker: float, gpus_per_worker: float | None, backend: str,
                    capacity: Capacity, *, local: bool) -> TrialResources:
    """Each trial's resources: ``gpus_per_worker`` when given, else 1 when the cluster has or can
    have GPUs, else 0; on a cluster whose node types are unknown and that has no GPU up, the flag
    is required rather than guessed (a guess of 0 trains on the head's CPUs)."""
    if gpus_per_worker is None:
        if not capacity.gpus and not capacity.known and not local:
            raise MixemError("This cluster has no GPU up and its node types are unknown, so pass --gpus-per-worker: "
                             "1 to train on GPUs the autoscaler will add, 0 to train on CPUs.")
        gpus_per_worker = 1.0 if capacity.gpus else 0.0
    if gpus_per_worker and not capacity.gpus and local:
        raise MixemError("--gpus-per-worker asks for GPUs but this machine has none; pass --gpus-per-worker 0.")
    if gpus_per_worker and capacity.known and capacity.gpus < workers * gpus_per_worker:
        raise MixemError(f"A trial needs {workers * gpus_per_worker:g} GPUs but this cluster can have at most "
                         f"{capacity.gpus:g}; lower --workers-per-trial or --gpus-per-worker.")
    if backend == "auto":
        # One worker needs no collective at all; gloo also runs logical GPUs of a CPU-only test cluster.
        backend = "nccl" if gpus_per_worker > 0 and workers > 1 else "gloo"
    return TrialResources(workers, cpus_per_worker, gpus_per_worker, backend)


def max_concurrent_trials(resources: TrialResources, requested: int | None, capacity: Capacity) -> int:
    """--max-concurrent, else as many trials as the cluster's CPUs and GPUs can hold at once, counted
    on what it can grow to (at least one)."""
    if requested is not None:
        return requested
    fits = [capacity.cpus / resources.cpus] if resources.cpus else []
    if resources.gpus:
        fits.append(capacity.gpus / resources.gpus)
    if not capacity.known:
        print("warning: the cluster's node types are unknown, so trials at once are sized on the nodes up now; "
              "pass --max-concurrent if the cluster will grow.", file=sys.stderr)
    return max(1, int(min(fits))) if fits else 1


def check_storage(storage: str, *, shared: bool) -> None:
    """On a cluster, every node reads and writes the sweep's storage: refuse a local path that is not
    visibly shared (a network file system mount, or ``shared`` vouched for by --storage-shared)."""
    if "://" in storage and not storage.startswith("file://"):
        return
    path = Path(storage.removeprefix("file://"))
    if shared or _mount_type(path).startswith(SHARED_FILE_SYSTEMS):
        return
    raise MixemError(f"--storage {storage} is a folder on this machine, but every node of the cluster writes "
                     "checkpoints there: pass --storage s3://BUCKET/PREFIX (or gs://...), or a path every node "
                     "mounts together with --storage-shared.")


def _mount_type(path: Path) -> str:
    """The file system type of the mount that holds ``path`` (from /proc/mounts; "" if unknown)."""
    path = path.resolve()
    best, kind = "", ""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and (path == Path(fields[1]) or Path(fields[1]) in path.parents):
            if len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    return kind


def in_ray_job() -> bool:
    """Whether this driver runs as the entrypoint of `ray job submit` (in a temporary working folder)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def preflight(dataset: str, data_dir: str | None, resources: TrialResources) -> None:
    """Load the dataset once where a Train worker would run (with its CPUs and GPUs), before any trial
    starts: missing data fails here with one sentence, not in every trial."""

    def load(name: str, folder: str | None) -> str | None:
        from mixem.data import load_dataset  # imports torch: on the worker node, not in this driver

        try:
            load_dataset(name, folder)
        except MixemError as error:
            return str(error)
        return None

    task = ray.remote(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker)(load)
    error = ray.get(task.remote(dataset, data_dir))
    if error:
        raise MixemError(f"On a worker node: {error}")
