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
from tune.ray_internals import autoscaler_node_groups, dashboard_address, placement_group_by_id
from tune.trial import TrialResources, leave_working_dir, trains_on_gpu

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
# Ray Train's controller polls its workers every 2 s by default: a trial's reports and its end reach
# Tune up to 2 s late. Polling every half second costs the controller next to nothing.
TRAIN_SETTINGS = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
# File systems that every node of a cluster can mount: a local --storage on one of them is shared.
# A node group of the autoscaler whose size has no bound.
UNBOUNDED = 10**6
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


def remove_orphaned_placement_groups() -> int:
    """Remove the placement groups that Ray should have removed with the job that made them, and return how
    many. A non-detached placement group lives as long as its job; but when a sweep's driver is killed just
    as a trial's Ray Train controller asks for its workers' placement group, the group can outlive the job,
    holding its CPUs and GPUs forever, and the next sweep waits for them forever. Only groups of jobs that
    have ended, and that were not made detached, are removed."""
    from ray.util.state import list_jobs, list_placement_groups

    address = os.environ.get("RAY_API_SERVER_ADDRESS") or dashboard_address()
    try:
        ended = {job.job_id for job in list_jobs(address=address, limit=10_000) if job.status != "RUNNING"}
        groups = list_placement_groups(address=address, detail=True, limit=10_000)
    except Exception as error:  # the state API raises several kinds (no dashboard, a timeout): not fatal here
        print(f"warning: could not look for placement groups left by ended Ray jobs ({error}); if the sweep waits "
              "for resources that `ray status` shows reserved, remove them.", file=sys.stderr)
        return 0
    orphans = [group.placement_group_id for group in groups
               if group.state == "CREATED" and not group.is_detached and group.creator_job_id in ended]
    for group_id in orphans:
        ray.util.remove_placement_group(placement_group_by_id(group_id))
    if orphans:
        print(f"removed {len(orphans)} placement group(s) left by Ray jobs that have ended (a driver killed while "
              "a trial started): their CPUs and GPUs are free again", file=sys.stderr)
    return len(orphans)


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


# The node label that names a node's type (cluster.yaml sets it on every node type): the pre-flight
# checks one node of each type with it. Ray's own ray.io/node-group label is not known to the
# autoscaler before a node exists, so a task cannot ask for a node type by it.
NODE_TYPE_LABEL = "mixem.io/node-type"


@dataclass(frozen=True)
class NodeType:
    """One node type of the cluster's config: its CPUs and GPUs, how many nodes it may have at once,
    and whether its nodes carry ``NODE_TYPE_LABEL`` (so that a task can ask for one of them)."""

    name: str
    cpus: float
    gpus: float
    max_count: int
    labelled: bool = False

    def holds(self, resources: TrialResources) -> bool:
        """Whether one node of this type can hold one Train worker of ``resources``."""
        return (self.max_count > 0 and self.cpus >= resources.cpus_per_worker
                and self.gpus >= resources.gpus_per_worker)


@dataclass(frozen=True)
class Capacity:
    """The most CPUs and GPUs the cluster can have at once, and its node types; ``known`` is False when
    only the nodes up now could be counted (no autoscaler config was found; ``types`` is then empty)."""

    cpus: float
    gpus: float
    known: bool
    types: tuple[NodeType, ...] = ()


def node_types() -> list[NodeType] | None:
    """The node types the cluster can start, from the autoscaler's config (see the module docstring),
    or None when there is none (a local Ray, a fixed cluster)."""
    groups = autoscaler_node_groups()
    if groups:
        return [NodeType(group["name"], float(group["resources"].get("CPU", 0)),
                         float(group["resources"].get("GPU", 0)),
                         UNBOUNDED if group["max_count"] < 0 else group["max_count"]) for group in groups]
    bootstrap = BOOTSTRAP_CONFIG.expanduser()
    if not bootstrap.is_file():
        return None
    import yaml

    config = yaml.safe_load(bootstrap.read_text()) or {}
    types = []
    for name, node_type in (config.get("available_node_types") or {}).items():
        resources, labels = node_type.get("resources") or {}, node_type.get("labels") or {}
        count = 1 if name == config.get("head_node_type") else node_type.get("max_workers", 0)
        types.append(NodeType(name, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), count,
                              labels.get(NODE_TYPE_LABEL) == name))
    return types or None


def cluster_capacity() -> Capacity:
    """What the cluster can grow to (its node types), else what it has now."""
    types = node_types()
    if types:
        return Capacity(sum(t.cpus * t.max_count for t in types), sum(t.gpus * t.max_count for t in types), True,
                        tuple(types))
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
    resources = TrialResources(workers, cpus_per_worker, gpus_per_worker, backend)
    _check_fits(resources, capacity, local=local)
    return resources


def _check_fits(resources: TrialResources, capacity: Capacity, *, local: bool) -> None:
    """A trial that no node (or not the whole cluster) could ever hold would wait forever: refuse it."""
    where = "this machine" if local else "this cluster"
    if capacity.types and not any(t.holds(resources) for t in capacity.types):
        largest = ", ".join(f"{t.name} ({t.cpus:g} CPUs, {t.gpus:g} GPUs)" for t in capacity.types if t.max_count)
        raise MixemError(f"No node type can hold one Train worker of {resources.cpus_per_worker:g} CPUs and "
                         f"{resources.gpus_per_worker:g} GPUs (the node types: {largest}); lower --cpus-per-worker "
                         "or --gpus-per-worker.")
    if capacity.known or local:
        check_trial_cpus(resources.workers, resources.cpus_per_worker, capacity.cpus, where)


def check_trial_cpus(workers: int, cpus_per_worker: float, available: float, where: str) -> None:
    """A trial of ``workers`` x ``cpus_per_worker`` CPUs fits in the ``available`` CPUs of ``where``."""
    if workers * cpus_per_worker > available:
        raise MixemError(f"A trial needs {workers * cpus_per_worker:g} CPUs ({workers} worker(s) x "
                         f"{cpus_per_worker:g}) but {where} can have at most {available:g}; lower "
                         "--cpus-per-worker or --workers-per-trial.")


def max_concurrent_trials(resources: TrialResources, requested: int | None, capacity: Capacity, *,
                          local: bool = False) -> int:
    """--max-concurrent, else as many trials as the cluster's CPUs and GPUs can hold at once, counted
    on what it can grow to (at least one). A ``local`` Ray (this machine) cannot grow: no warning."""
    if requested is not None:
        return requested
    fits = [capacity.cpus / resources.cpus] if resources.cpus else []
    if resources.gpus:
        fits.append(capacity.gpus / resources.gpus)
    if not capacity.known and not local:
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


def preflight(dataset: str, data_dir: str | None, resources: TrialResources, capacity: Capacity) -> None:
    """Before any trial starts, check one node of every node type that can hold a Train worker, with a
    worker's CPUs and GPUs: the dataset loads there (staged from its URI first), and a worker that
    reserves GPUs finds a usable one. A failure names each node type and its reason in one sentence,
    instead of failing every trial. Waits for the autoscaler to start the nodes, saying so."""
    checks = _preflight_checks(resources, capacity)
    task = ray.remote(_check_node)
    pending = {task.options(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker, **options)
               .remote(dataset, data_dir, resources.gpus_per_worker): name for name, options in checks}
    failures = []
    while pending:
        done, _ = ray.wait(list(pending), timeout=PREFLIGHT_PATIENCE_S)
        if not done:
            print(f"waiting for a node of {_and(sorted(pending.values()))} (the autoscaler starts them; "
                  "`ray status` shows how far it is)...", file=sys.stderr)
        for ref in done:
            name, report = pending.pop(ref), ray.get(ref)
            if report["error"]:
                failures.append(f"on {name} ({report['node']}) {report['error'].rstrip('.')}")
            else:
                print(f"checked {name} ({report['node']}): {report['device']}, {dataset} loads", file=sys.stderr)
    if failures:
        raise MixemError("Before any trial started, " + "; ".join(sorted(failures)) + ".")


PREFLIGHT_PATIENCE_S = 60.0


def _preflight_checks(resources: TrialResources, capacity: Capacity) -> list[tuple[str, dict]]:
    """(what is checked, the task's scheduling options): one per labelled node type that holds a
    worker, and one wherever Ray places it for node types without the label (or none known)."""
    holding = [t for t in capacity.types if t.holds(resources)]
    checks = [(f"node type {t.name}", {"label_selector": {NODE_TYPE_LABEL: t.name}}) for t in holding if t.labelled]
    unlabelled = [t.name for t in holding if not t.labelled]
    if unlabelled:
        print(f"note: node type(s) {_and(unlabelled)} carry no {NODE_TYPE_LABEL} label, so one check runs on "
              "whichever of them Ray picks; give each node type `labels: {" + NODE_TYPE_LABEL + ": NAME}` in the "
              "cluster config to check every one.", file=sys.stderr)
    if unlabelled or not holding:
        checks.append((f"node type {' or '.join(unlabelled)}" if unlabelled else "a worker node", {}))
    return checks


def _check_node(dataset: str, data_dir: str | None, gpus: float) -> dict:
    """On a worker node: its address, the device a worker there would train on, and what stops it (or None)."""
    leave_working_dir()
    node = ray.util.get_node_ip_address()
    from mixem.data import load_dataset  # imports torch: on the worker node, not in this driver
    from mixem.device import cuda_problem, device_name, pick_device

    on_gpu = trains_on_gpu(gpus)
    try:
        problem = cuda_problem() if on_gpu else None
        if problem:
            raise MixemError(f"a worker reserves {gpus:g} GPU but {problem}; fix that node type's NVIDIA driver or "
                             "image, or pass --gpus-per-worker 0 to train on CPUs")
        load_dataset(dataset, data_dir)
    except MixemError as error:
        return {"node": node, "device": None, "error": str(error)}
    return {"node": node, "device": device_name(pick_device("cuda" if on_gpu else "cpu")), "error": None}


def pixel_baselines(dataset: str, data_dir: str | None, resources: TrialResources, **settings) -> list[dict]:
    """``mixem.baselines.dataset_baselines`` of ``dataset`` with ``settings`` (eval_split, seeds, n_init,
    max_iter), computed where a Train worker would run (where the data is), cached there."""

    def compute(name: str, folder: str | None, options: dict) -> list[dict]:
        leave_working_dir()
        from mixem.baselines import dataset_baselines  # torch and scikit-learn: on the worker node

        return dataset_baselines(name, folder, **options)

    task = ray.remote(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker)(compute)
    return ray.get(task.remote(dataset, data_dir, settings))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
