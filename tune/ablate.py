"""The paper's ablations, each preset crossed with seeds, through the sweep's Ray glue.

    python tune/ablate.py --dataset fashion-mnist --seeds 3 --output sweeps/fm-ablation
    python tune/ablate.py --dataset digits --presets simclr,mixem --seeds 2 --max-epochs 20
    python tune/ablate.py --dataset digits --smoke-test                     # simclr and mixem, 1 seed, 2 epochs
    python tune/ablate.py --output sweeps/fm-ablation --resume

The presets are data, ``mixem.presets.ABLATIONS``: the loss ablation (SimCLR head, mixture
alone, + marginal entropy, + instance term, + associative terms = MIX'EM as the authors' code,
then term (ii) as the paper's entropy) and K in {10, 20, 40}. Nothing is searched and no trial is
stopped early; the results have the sweep's Parquet schema with ``preset`` filled. Every trial
evaluates every K-means variant, so the K-means ablation needs no runs of its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # `python tune/ablate.py`: make the project importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixem.presets import COMPONENT_ABLATION, LOSS_ABLATION
from tune.arguments import add_run_arguments
from tune.run import main_of
from tune.settings import DEFAULT_SEEDS, SMOKE_PRESETS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
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
                          f"{','.join(LOSS_ABLATION + COMPONENT_ABLATION)}; with --smoke-test "
                          f"{','.join(SMOKE_PRESETS)})")
    ablation.add_argument("--seeds", type=int,
                          help=f"seeds per preset: --seed, --seed + 1, ... (default: {DEFAULT_SEEDS})")
    return parser


def main(argv: list[str] | None = None) -> int:
    return main_of(build_parser(), "ablation", argv)


if __name__ == "__main__":
    # Run through the package module, so that Ray pickles `tune.*` by reference, not `__main__.*`.
    from tune.ablate import main as package_main

    sys.exit(package_main())
