"""What every benchmark shares: figures as rows, timing by turns, the device flag, the table.

A figure is a dict ``{"figure", "value", "unit", "command"}``; ``command`` reproduces that figure
alone. Measurements that are compared run in turns within one process (``take_turns``), so a
neighbour's load on a shared machine slows them alike, and every figure is a median.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def figure(name: str, value: float, unit: str, command: str) -> dict:
    return {"figure": name, "value": float(value), "unit": unit, "command": command}


def take_turns(runs: list[Callable[[], object]], repeats: int, wait: Callable[[], object]) -> list[float]:
    """Median seconds of each of ``runs``, run in turns ``repeats`` times after one warm-up round;
    ``wait()`` blocks until the device is done (a CUDA synchronisation, or nothing on the CPU)."""
    seconds: list[list[float]] = [[] for _ in runs]
    for repeat in range(repeats + 1):
        for run, times in zip(runs, seconds, strict=True):
            started = time.perf_counter()
            run()
            wait()
            if repeat > 0:  # the first round warms up: allocations, kernels, caches
                times.append(time.perf_counter() - started)
    return [statistics.median(times) for times in seconds]


def waiter(device: str) -> Callable[[], object]:
    import torch  # here, not at the top: the Ray benchmarks' sweep drivers never import torch

    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="smaller and fewer repeats, for a first look and CI")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")


def check_device(parser: argparse.ArgumentParser, device: str) -> None:
    """Exit with a one-sentence usage error unless ``device`` is a torch device this machine has."""
    from mixem.device import check_device as check  # the trainer's own check, messages and all
    from mixem.errors import MixemError

    try:
        check(device)
    except MixemError as error:
        parser.error(str(error))


def print_table(rows: list[dict]) -> None:
    """The figures, each with its value, unit and the command that measures it alone."""
    width = max(len(row["figure"]) for row in rows)
    print(f"{'figure':<{width}} {'median':>12}  {'unit':<10} command")
    for row in rows:
        value = f"{row['value']:.3f}" if abs(row["value"]) < 10 else f"{row['value']:.1f}"
        print(f"{row['figure']:<{width}} {value:>12}  {row['unit']:<10} {row['command']}")
