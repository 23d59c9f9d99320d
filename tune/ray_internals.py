"""Every use of Ray's private API in this project, in one module, for the one Ray version it was written for.

Ray's Train and Tune APIs moved a lot between 2.4x and 2.6x; a name that starts with ``_`` or lives in a
``_private``/``_internal`` module can change in any release. Each function below is one workaround:
what it does, why the public API does not suffice, and the test in ``tests/test_ray_internals.py`` that
fails when an upgrade breaks it. Importing this module on another Ray version fails at once, here, with
one sentence, rather than somewhere inside a sweep.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass

import ray

RAY_VERSION = "2.60.0"
if ray.__version__ != RAY_VERSION:
    raise ImportError(
        f"tune/ray_internals.py reaches into private names of Ray {RAY_VERSION}, and this is Ray {ray.__version__}: "
        f"install the pinned version (pip install 'ray[default,tune,train]=={RAY_VERSION}'), or port each function of "
        "that module and run tests/test_ray_internals.py.")

from ray._private.ray_constants import env_integer  # noqa: E402 (after the version check, on purpose)
from ray.exceptions import GetTimeoutError  # noqa: E402
from ray.train._internal.utils import get_address_and_port  # noqa: E402
from ray.train.backend import Backend, BackendConfig  # noqa: E402
from ray.train.constants import (  # noqa: E402
    DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
    TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
)
from ray.train.v2._internal.util import TrainingFramework  # noqa: E402

logger = logging.getLogger(__name__)

# The fake multi-node provider of Ray's autoscaler, for tests of the cluster flow on one machine. Its module
# is private; the cluster config names it as an "external" provider, since the wheel lacks the defaults file
# that provider type "fake_multinode" loads.
FAKE_PROVIDER_MODULE = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"


# ---------------------------------------------------------------------------------------------
# The cluster's node types (tune/cluster.py)


def autoscaler_node_groups() -> list[dict] | None:
    """The node groups of the autoscaler's cluster config in the GCS (KubeRay and autoscaler v2 write it;
    ``ray up`` does not), each ``{"name", "resources", "max_count"}``, or None when there is none.
    Public Ray has no reader for it: Ray Data and Train size themselves with ``ray._private.state``.
    Test: test_node_groups_are_read_from_the_gcs."""
    from ray._private.state import state

    config = state.get_cluster_config()
    if config is None or not config.node_group_configs:
        return None
    return [{"name": group.name, "resources": dict(group.resources), "max_count": group.max_count}
            for group in config.node_group_configs]


def publish_node_groups(gcs_address: str, groups: list[dict]) -> None:
    """Write node groups where KubeRay and autoscaler v2 keep them (tests: a cluster that can grow).
    Test: test_node_groups_are_read_from_the_gcs."""
    from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, GCS_AUTOSCALER_STATE_NAMESPACE, GcsClient
    from ray.core.generated import autoscaler_pb2

    config = autoscaler_pb2.ClusterConfig()
    for group in groups:
        added = config.node_group_configs.add(name=group["name"], min_count=0, max_count=group["max_count"])
        added.resources.update(group["resources"])
    GcsClient(address=gcs_address).internal_kv_put(GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode(),
                                                   config.SerializeToString(), True,
                                                   GCS_AUTOSCALER_STATE_NAMESPACE.encode())


def check_cluster_config(config: dict) -> dict:
    """What ``ray up`` checks of a cluster config before it contacts the cloud: Ray's defaults merged in
    (``prepare_config``), then its JSON schema and cross-field checks (``validate_config``); returns the
    prepared config. Public Ray only runs them inside ``ray up``. Test: tests/test_cluster_yaml.py."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


def dashboard_address() -> str:
    """The dashboard address of the Ray this process is connected to, as ``http://HOST:PORT`` (state API
    calls must name it where several Rays run on one machine). Test: test_dashboard_address_is_this_rays."""
    return "http://" + ray._private.worker.get_dashboard_url()


def placement_group_by_id(hex_id: str):
    """A handle to the placement group with id ``hex_id`` (as the state API lists it), to remove it: public
    Ray hands out handles only to the groups a process made. Test: test_an_orphaned_placement_group_is_removed."""
    from ray.util.placement_group import PlacementGroup

    return PlacementGroup(ray.PlacementGroupID(bytes.fromhex(hex_id)))


# ---------------------------------------------------------------------------------------------
# Tune (tune/plans.py, tune/tuning.py, tune/trial.py)


def asha_bracket(scheduler):
    """The one bracket of an ``ASHAScheduler`` (the sweep asks for one), to refill its rungs with the
    epochs recorded before a resume: Tune saves no scheduler state. Test: test_asha_bracket_takes_results."""
    (bracket,) = scheduler._brackets
    return bracket


def replace_restored_plan(tuner, *, search_alg, scheduler, callback, callback_type) -> None:
    """After ``Tuner.restore``: this run's search algorithm and scheduler (Ray 2.60 restores the first
    run's from tuner.pkl, with its old concurrency limit and empty rungs), and this run's results
    callback in place of the pickled one of ``callback_type``; every other callback the sweep was started
    with (a user's W&B or MLflow logger) is kept as restored. ``Tuner.restore`` takes no tune_config or
    callbacks. Test: test_a_restored_tuner_gets_the_new_plan_and_keeps_user_callbacks."""
    restored = tuner._local_tuner
    restored._tune_config.search_alg = search_alg
    restored._tune_config.scheduler = scheduler
    kept = [c for c in restored._run_config.callbacks or [] if not isinstance(c, callback_type)]
    restored._run_config.callbacks = [callback, *kept]


def set_progress_metrics(trainable, metrics: list[str]) -> None:
    """What Tune's progress table shows of each result (all ~80 scores otherwise); Tune reads this
    attribute of a trainable and has no public setter. Test: test_progress_metrics_reach_tune."""
    trainable._progress_metrics = metrics


def progress_metrics_of(trainable) -> list[str] | None:
    """The metrics Tune's progress table will show for ``trainable``, as Tune finds them (tests)."""
    from ray.tune.progress_reporter import _detect_progress_metrics

    return _detect_progress_metrics(trainable)


# ---------------------------------------------------------------------------------------------
# Ray Train (tune/trial.py)


def trainer_without_datasets_callback():
    """Ray Train's ``DataParallelTrainer`` less its Ray Data callback, which starts a Ray Data actor (a
    process) for every trial though the workers load their images themselves: about a second per
    trial on 2 cores. Test: test_trainer_has_no_datasets_callback."""
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    class Trainer(DataParallelTrainer):
        def _create_default_callbacks(self):
            return [callback for callback in super()._create_default_callbacks()
                    if not isinstance(callback, DatasetsCallback)]

    return Trainer


# torch.distributed for a trial's Train workers, set up without importing torch in Ray Train's controller.
# Ray Train's ``TorchConfig`` lives in a module that imports torch, and every trial's controller process
# unpickles it: about 3 of a trial's seconds on 2 cores (benchmarks/ray_overhead.py), for a process that
# never touches a tensor. ``TorchProcessGroup`` is the same configuration in a module that imports no
# torch; its backend calls Ray's own torch functions (``ray.train.torch.config``) by name on the workers,
# which import torch anyway. Only what ``_TorchBackend`` does for gloo and nccl is kept (no TPU slices).
# Tests: tests/test_backend.py, and every sweep test.
_TORCH_CONFIG = "ray.train.torch.config"


def _on_worker(function: str, **kwargs):
    """Call ``ray.train.torch.config.<function>`` on a worker, where torch is imported."""
    return getattr(importlib.import_module(_TORCH_CONFIG), function)(**kwargs)


def _set_master(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = addr, str(port)


class _DeviceContext:
    """Ray's ``TorchConfigContextManager`` (each worker's CUDA device), imported on the worker."""

    def __enter__(self):
        self._context = importlib.import_module(_TORCH_CONFIG).TorchConfigContextManager()
        return self._context.__enter__()

    def __exit__(self, *exception):
        return self._context.__exit__(*exception)


class _Backend(Backend):
    share_cuda_visible_devices = True  # as Ray's torch backend: a worker sees its node's GPUs of the run

    def on_start(self, worker_group, backend_config: TorchProcessGroup) -> None:
        # As ray.train.torch.config._TorchBackend.on_start with init_method "env" (Ray 2.60).
        addr, port = worker_group.execute_single(0, get_address_and_port)
        worker_group.execute(_set_master, addr=addr, port=port)
        worker_group.execute(_on_worker, function="_set_torch_distributed_env_vars")
        ray.get([worker_group.execute_single_async(rank, _on_worker, function="_setup_torch_process_group",
                                                   backend=backend_config.backend, world_rank=rank,
                                                   world_size=len(worker_group), init_method="env://",
                                                   timeout_s=backend_config.timeout_s)
                 for rank in range(len(worker_group))])

    def on_shutdown(self, worker_group, backend_config: TorchProcessGroup) -> None:
        # As _TorchBackend.on_shutdown: a worker stuck in destroy_process_group does not hold the trial.
        futures = worker_group.execute_async(_on_worker, function="_shutdown_torch",
                                             destroy_process_group=len(worker_group) > 1)
        timeout_s = env_integer(TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S)
        try:
            ray.get(futures, timeout=timeout_s)
        except GetTimeoutError:
            logger.warning("torch's process group shutdown timed out after %s seconds", timeout_s)


@dataclass
class TorchProcessGroup(BackendConfig):
    """``TorchConfig(backend=...)`` without torch in the controller: ``backend`` is gloo or nccl."""

    backend: str
    timeout_s: int = 1800  # Ray's TorchConfig default

    @property
    def backend_cls(self):
        return _Backend

    @property
    def train_func_context(self):
        return _DeviceContext

    @property
    def framework(self):
        return TrainingFramework.TORCH
