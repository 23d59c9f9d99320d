"""Hyperparameter sweep of MIX'EM on Ray: Tune searches, Train trains, Parquet collects.

    python tune/sweep.py --dataset digits --smoke-test                 # CI-sized: 4 trials x 2 epochs
    python tune/sweep.py --dataset digits --num-samples 16 --max-epochs 30 --output sweeps/digits
    python tune/sweep.py --dataset digits --space num_components=10 w_push=0 lr=1e-3:1e-2
    python tune/sweep.py --output sweeps/digits --resume               # continue a stopped sweep
    python tune/sweep.py --dataset cifar100-20 --address auto --storage s3://BUCKET/mixem --output /abs/c100

The pieces, each a module of ``tune/``: ``space`` (the search space and --space), ``trial`` (the
Ray Train worker and the Tune trainable), ``results`` and ``recording`` (the Parquet files and the
callback that writes them), ``cluster`` (starting Ray, sizing trials), ``plans`` (searcher, ASHA),
``run`` and ``tuning`` (the command line and the Tuner, shared with ``tune/ablate.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # `python tune/sweep.py`: make the project importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune.arguments import add_run_arguments
from tune.run import main_of
from tune.settings import SEARCHERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python tune/sweep.py",
        description="Search MIX'EM's loss weights and K (tune/space.py) with Ray Tune: each trial trains with "
        "Ray Train, ASHA stops weak trials early, and every trial and epoch lands in Parquet files "
        "(the README lists their columns).",
        epilog="examples:\n"
        "  python tune/sweep.py --dataset digits --smoke-test\n"
        "  python tune/sweep.py --dataset digits --num-samples 16 --output sweeps/digits\n"
        "  python tune/sweep.py --dataset digits --space num_components=10 w_push=0 lr=1e-3:1e-2\n"
        "  python tune/sweep.py --dataset digits --metric val_contrastive     # no labels needed\n"
        "  python tune/sweep.py --output sweeps/digits --resume\n"
        "  python tune/sweep.py --dataset cifar100-20 --address auto --gpus-per-worker 1 \\\n"
        "      --storage s3://BUCKET/mixem --output /home/ubuntu/sweeps/c100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    search = parser.add_argument_group("search")
    search.add_argument("--search", choices=SEARCHERS, default="optuna",
                        help="optuna: Optuna's TPE; random: random draws from the same space; grid: every "
                        "combination of each parameter's grid values (tune/space.py); default: %(default)s")
    search.add_argument("--num-samples", type=int,
                        help="trials to run (default: 16; with --search grid, repeats of the whole grid, default 1)")
    search.add_argument("--grace-epochs", type=int,
                        help="epochs every trial gets before ASHA may stop it; the sweep also evaluates every "
                        "that many epochs (default: max(1, max-epochs // 10))")
    search.add_argument("--search-seed", type=int,
                        help="the searcher's seed (TPE's and random search's draws), apart from the training seed "
                        "--seed of every trial (default: --seed)")
    search.add_argument("--reduction-factor", type=float, default=3,
                        help="ASHA keeps the best 1/reduction-factor of trials at each rung (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return main_of(build_parser(), "sweep", argv)


if __name__ == "__main__":
    # Run through the package module, so that Ray pickles `tune.*` by reference, not `__main__.*`.
    from tune.sweep import main as package_main

    sys.exit(package_main())
