"""The best trial of a search, and the commands that train it again and confirm it over seeds.

    python -m analysis.best sweeps/digits                  # prints both commands
    python -m analysis.best sweeps/digits --space          # prints NAME=VALUE of the best config, for scripts

The best trial is the one with the best final value of the sweep's ``--metric`` (maximised or
minimised as ``mixem.scores.metric_mode`` says) among the trials that ran all their epochs: an
early-stopped trial's value is from fewer epochs. Its configuration is written as the fields that
differ from the dataset's preset (``mixem.config.DATASET_PRESETS``).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

import pandas as pd

from analysis.runs import load_runs, resolve_metric
from mixem.config import FIELDS, Config
from mixem.errors import MixemError
from mixem.scores import metric_mode

# Set by the commands themselves, not passed as --space.
NOT_IN_SPACE = ("dataset", "epochs", "seed")


def best_trial(trials: pd.DataFrame, metric: str) -> pd.Series:
    """The finished trial with the best final ``metric``; MixemError if no finished trial has it."""
    done = trials[(trials["status"] == "finished") & trials[f"final/{metric}"].notna()]
    if done.empty:
        raise MixemError(f"No finished trial has a value of {metric}; let the search run longer, or pass another "
                         "--metric.")
    values = done[f"final/{metric}"]
    return done.loc[values.idxmax() if metric_mode(metric) == "max" else values.idxmin()]


def changed_fields(trial: pd.Series) -> dict:
    """The trial's config fields that differ from its dataset's preset, in config order."""
    preset = Config.for_dataset(trial["config/dataset"]).to_flat()
    values = {name: _python(trial[f"config/{name}"]) for name in FIELDS}
    return {name: value for name, value in values.items() if value != preset[name]}


def _python(value):
    return value.item() if hasattr(value, "item") else value


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:.10g}" if math.isfinite(value) else str(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def space_tokens(trial: pd.Series) -> list[str]:
    """``NAME=VALUE`` of every changed field a --space may set."""
    return [f"{name}={_text(value)}" for name, value in changed_fields(trial).items() if name not in NOT_IN_SPACE]


def commands(trial: pd.Series, seeds: int = 3) -> dict[str, str]:
    """``{"train": ..., "confirm": ...}``: ``python -m mixem.train`` of the trial's config, and
    ``python tune/ablate.py`` running it with ``seeds`` seeds (preset ``given``: no overrides)."""
    changed = changed_fields(trial)
    dataset, epochs = trial["config/dataset"], int(trial["config/epochs"])
    tokens = space_tokens(trial)  # none: the dataset's preset itself, which `given` runs without --space
    flags = []
    for name, value in changed.items():
        if name != "dataset":
            flag = name.replace("_", "-")
            flags += [f"--{'' if value else 'no-'}{flag}"] if isinstance(value, bool) else [f"--{flag}", _text(value)]
    # Shell-quoted: a value a shell would split or expand (a space, a *, a $) reaches the command as it is.
    return {
        "train": shlex.join(["python", "-m", "mixem.train", "--dataset", dataset, *flags]),
        "confirm": shlex.join(["python", "tune/ablate.py", "--dataset", dataset, "--presets", "given", "--seeds",
                               str(seeds), "--max-epochs", str(epochs), *(["--space", *tokens] if tokens else [])]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.best", description=__doc__.split("\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("sweep", type=Path, help="the --output folder of a tune/sweep.py run")
    parser.add_argument("--metric", help="rank by this score (default: the sweep's --metric)")
    parser.add_argument("--space", action="store_true", help="print only NAME=VALUE of the best config, one line")
    args = parser.parse_args(argv)
    try:
        trials = load_runs(args.sweep)
        searched = trials[trials["preset"] == ""]  # an ablation's trials are named by their preset
        if searched.empty:
            raise MixemError(f"{args.sweep} holds an ablation (tune/ablate.py), not a search; pass the --output "
                             "folder of a tune/sweep.py run.")
        metric = resolve_metric([args.sweep], args.metric)
        best = best_trial(searched, metric)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.space:
        print(" ".join(space_tokens(best)))
        return 0
    print(f"best trial {best['trial_id']}: final {metric} {best[f'final/{metric}']:.4f}")
    for name, command in commands(best).items():
        print(f"{name}: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
