"""The benchmark suite: every figure, measured in this one process, printed as one table.

    python -m benchmarks --quick             # under 3 minutes on a 2-core CPU: benchmarks/RESULTS.md's CPU figures
    python -m benchmarks                     # GPU-sized batches (ResNet-18 at 512): hours on a CPU, minutes on a GPU
    python -m benchmarks --device cuda       # adds the GPU figures (ResNet-18 views/s per speed option)
    python -m benchmarks --only train_step augment

Each figure is a median; the figures that are compared (MIX'EM and SimCLR steps, our augmentation
and torchvision's) are measured in turns, side by side, so a neighbour's load slows them alike.
Each row names the command that measures it alone.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # `python benchmarks/run.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks import augment, eval_cost, ray_overhead, train_step
from benchmarks.common import add_arguments, check_device, print_table

SUITE = {"train_step": train_step, "augment": augment, "eval_cost": eval_cost, "ray_overhead": ray_overhead}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--only", nargs="+", choices=list(SUITE), metavar="NAME",
                        help=f"run only these benchmarks ({', '.join(SUITE)})")
    args = parser.parse_args(argv)
    check_device(parser, args.device)
    gpu = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "no GPU"
    print(f"{platform.node()}: {torch.get_num_threads()} torch threads, torch {torch.__version__}, {gpu}; "
          f"{'quick' if args.quick else 'full'} run", flush=True)
    rows = []
    for name in args.only or list(SUITE):
        started = time.perf_counter()
        rows += SUITE[name].measure(args.quick, args.device)
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
