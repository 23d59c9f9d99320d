"""torch.distributed for a trial's Train workers, set up without importing torch in Ray Train's controller.

Ray Train's ``TorchConfig`` lives in a module that imports torch, and every trial's controller
process unpickles it: about 3 of a trial's seconds on 2 cores (benchmarks/ray_overhead.py), for a
process that never touches a tensor. ``TorchProcessGroup`` is the same configuration in a module
that imports no torch; its backend calls Ray's own torch functions (``ray.train.torch.config``) by
name on the workers, which import torch anyway. Only what ``_TorchBackend`` does for gloo and
nccl is kept (no TPU slices).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass

import ray
from ray._private.ray_constants import env_integer
from ray.exceptions import GetTimeoutError
from ray.train._internal.utils import get_address_and_port
from ray.train.backend import Backend, BackendConfig
from ray.train.constants import DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S
from ray.train.v2._internal.util import TrainingFramework

_TORCH_CONFIG = "ray.train.torch.config"
logger = logging.getLogger(__name__)


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
