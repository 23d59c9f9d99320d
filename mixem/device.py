"""Which device a run trains on, whether it is usable, and how many CPU threads it may use.

A run asked to train on a GPU either gets a usable one or stops with one sentence: it never falls
back to the CPU on its own (a sweep's "GPU" trial that quietly trained on a CPU would be billed and
reported as GPU work). Nothing here imports Ray: ``tune/`` passes in what Ray assigned.
"""

from __future__ import annotations

import os

import torch

from mixem.errors import MixemError

DEVICE_TYPES = ("cpu", "cuda")


def cuda_problem() -> str | None:
    """Why torch cannot use a GPU here, in words, or None when it can (a tiny tensor was made on one)."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    if not torch.cuda.is_available():
        return "torch finds no GPU (no NVIDIA GPU, its driver is missing or older than this torch's CUDA " \
               f"{torch.version.cuda} needs, or CUDA_VISIBLE_DEVICES hides it)"
    try:
        torch.zeros(1, device="cuda").add_(1)
    except RuntimeError as error:  # e.g. a driver too old for the wheel's CUDA, or a GPU in a bad state
        return f"a tensor cannot be made on the GPU ({str(error).splitlines()[0]})"
    return None


def check_device(name: str) -> None:
    """MixemError unless ``name`` is a device this machine can train on: cpu, cuda or cuda:N
    (the trainer's and the benchmarks' --device)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise MixemError(f"--device {name} is not a device this trainer runs on; pass cpu, cuda or cuda:N.")
    if device.type == "cuda":
        problem = cuda_problem()
        if problem:
            raise MixemError(f"--device {name} asks for a GPU, but {problem}; pass --device cpu or leave it out.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MixemError(f"--device {name}, but torch sees {torch.cuda.device_count()} GPU(s) here, "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}; pass one of them.")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device (``cuda`` alone: this rank's GPU), else this rank's GPU when there is a usable
    one, else the CPU. A GPU that was asked for and is not usable is a MixemError, never the CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        check_device(str(device))
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        # Several workers on one node (torchrun, Ray Train) each take the GPU of their local rank.
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return device


def device_name(device: torch.device) -> str:
    """What a run records as the device it trained on: ``cpu``, or ``cuda:0 NVIDIA A10G``."""
    if device.type == "cuda":
        return f"{device} {torch.cuda.get_device_name(device)}"
    return str(device)


def set_cpu_threads(threads: int) -> None:
    """Let torch, and the OpenMP and BLAS pools scikit-learn's K-means uses, run ``threads`` threads.

    Ray's cluster launcher exports OMP_NUM_THREADS=1 to every node, so a worker given 3 CPUs would
    otherwise use one of them for augmentation and K-means."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for processes started from here
    threadpool_limits(threads)
