"""The paper's ablations, each preset crossed with seeds, through the sweep's Ray glue.

    python tune/ablate.py --dataset fashion-mnist --seeds 3 --output sweeps/fm-ablation
    python tune/ablate.py --dataset digits --presets simclr,mixem --seeds 2 --max-epochs 20
    python tune/ablate.py --dataset digits --smoke-test                     # simclr and mixem, 1 seed, 2 epochs
    python tune/ablate.py --output sweeps/fm-ablation --resume

The presets are data, ``mixem.presets.ABLATIONS``: the loss ablation (SimCLR head, mixture
alone, + marginal entropy, + instance term, + associative terms = MIX'EM, the code's form of
the instance term) and K in {10, 20, 40}. Nothing is searched and no trial is stopped early;
the results have the sweep's Parquet schema with ``preset`` filled. Every trial evaluates every
K-means variant, so the K-means ablation needs no runs of its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # `python tune/ablate.py`: make the project importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray import tune

from mixem.errors import MixemError
from mixem.presets import ABLATIONS, COMPONENT_ABLATION, LOSS_ABLATION
from tune.sweep import Plan, add_run_arguments, check_config
from tune.sweep import main as sweep_main

SMOKE_PRESETS = ["simclr", "mixem"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python tune/ablate.py",
        description="Run the paper's ablation presets (mixem.presets.ABLATIONS), each with --seeds seeds, on Ray; "
        "results in the sweep's Parquet schema with a preset column.",
        epilog="examples:\n"
        "  python tune/ablate.py --dataset fashion-mnist --seeds 3 --output sweeps/fm-ablation\n"
        "  python tune/ablate.py --dataset digits --presets simclr,mixem --seeds 2 --max-epochs 20\n"
        "  python tune/ablate.py --output sweeps/fm-ablation --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    ablation = parser.add_argument_group("ablation")
    ablation.add_argument("--presets", type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
                          help="comma-separated presets (default: all, "
                          f"{','.join(LOSS_ABLATION + COMPONENT_ABLATION)})")
    ablation.add_argument("--seeds", type=int,
                          help="seeds per preset: --seed, --seed + 1, ... (default: 3)")
    return parser


def plan_ablation(args: argparse.Namespace, fixed: dict, space: dict) -> Plan:
    """Every preset x seed once (a grid), no searcher, no early stopping."""
    presets = args.presets or (SMOKE_PRESETS if args.smoke_test else LOSS_ABLATION + COMPONENT_ABLATION)
    unknown = [name for name in presets if name not in ABLATIONS]
    if unknown:
        raise MixemError(f"Unknown preset(s) {', '.join(unknown)}; choose from {', '.join(ABLATIONS)}.")
    seeds = args.seeds if args.seeds is not None else 3
    if seeds < 1:
        raise MixemError("--seeds must be at least 1.")
    user_fixed = set(fixed) - {"dataset", "epochs", "seed", "eval_every", "kmeans_n_init"}
    for name in presets:
        clash = sorted(user_fixed & set(ABLATIONS[name]))
        if clash:
            raise MixemError(f"--space sets {', '.join(clash)}, which preset {name} defines; drop it from --space.")
        check_config(args.dataset, {**fixed, **ABLATIONS[name]})
    param_space = {**fixed, "preset": tune.grid_search(presets),
                   "seed": tune.grid_search([args.seed + i for i in range(seeds)])}
    return Plan(param_space, search_alg=None, scheduler=None, num_samples=1, varied=["preset", "seed"])


def main(argv: list[str] | None = None) -> int:
    return sweep_main(argv, parser=build_parser(), kind="ablation", make_plan=plan_ablation)


if __name__ == "__main__":
    # Run through the package module, so that Ray pickles `tune.*` by reference, not `__main__.*`.
    from tune.ablate import main as package_main

    sys.exit(package_main())
