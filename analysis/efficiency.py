"""How much compute each search needed to find a good configuration: TPE + ASHA, random search, a grid.

    python -m analysis.efficiency results/digits/optuna-* results/digits/random-* results/digits/grid --target 0.85

Every folder is one search (``tune/sweep.py --output``) over the same space and budget, each with its
own searcher seed (``--search-seed``) and the same training seed; its method is read from its
``sweep.json`` (``--search``, and ASHA when ``--grace-epochs`` is below ``--max-epochs``). The
target is a value of the metric fixed before the searches ran (``--target``, required): a target
taken from the results themselves (say, the best any search found) could only be reached by the
search that found it. A folder's compute to the target is the sum of its trials' wall seconds
(trial-seconds: what a cluster bills), in the order the trials ended, up to and including the
first finished trial at or above the target; a folder that never reaches it is reported with all
its compute and marked. Also given: the same count in training and evaluation seconds only (the
trainer's own times, without Ray's per-trial overhead). Per method, the success rate (searches that
reached the target) with its 95% Clopper-Pearson interval over the searcher seeds.

Then ASHA's settings replayed on the searches that ran every trial to the end (a grid): successive
halving at rungs ``grace, grace x rf, ...`` keeps the best ``1/rf`` of the trials by the metric at
each rung; the table gives the training epochs it would have spent (as a fraction of the full run)
and the final metric of the best trial it keeps, for each grace period and reduction factor, so
the defaults can be chosen from measurements rather than folklore.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from analysis import stats
from analysis.runs import RESTORE, folders_of, load_epochs, load_runs, resolve_metric, sweep_settings, value_bounds
from mixem.errors import MixemError
from mixem.scores import metric_mode
from tune.results import SETTINGS_FILE


def method_of(folder: Path) -> str:
    """"tpe+asha", "random+asha", "grid", ... from a search folder's sweep.json."""
    settings = sweep_settings(folder)
    if settings.get("kind") == "ablation":
        raise MixemError(f"{folder} holds an ablation (tune/ablate.py), not a search; pass --output folders of "
                         "tune/sweep.py.")
    args = settings["args"]
    wanted = {"search": (str, "the name of a searcher"), "grace_epochs": (int, "a whole number"),
              "max_epochs": (int, "a whole number")}
    for name, (kind, what) in wanted.items():
        value = args.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise MixemError(f"{folder / SETTINGS_FILE} is corrupt: args.{name} is {json.dumps(value)}, not {what}; "
                             f"{RESTORE}.")
    name = {"optuna": "tpe"}.get(args["search"], args["search"])
    return name + ("+asha" if args["grace_epochs"] < args["max_epochs"] else "")


def compute_to_target(trials: pd.DataFrame, working: pd.Series, metric: str, target: float) -> dict:
    """Trial-seconds and training seconds, in the order trials ended, until the first finished trial
    whose final ``metric`` reaches ``target`` (``working``: training + evaluation seconds by trial)."""
    sign = 1 if metric_mode(metric) == "max" else -1
    wall = training = 0.0
    for _, trial in trials.iterrows():  # trials.parquet holds trials in the order they ended
        wall += trial["wall_seconds"]
        training += working.get(trial["trial_id"], 0.0)
        if trial["status"] == "finished" and sign * trial[f"final/{metric}"] >= sign * target:
            return {"trial-seconds": wall, "training seconds": training, "reached": True}
    return {"trial-seconds": wall, "training seconds": training, "reached": False}


def best_of(values: pd.Series, metric: str) -> float:
    """The best of ``values`` of ``metric`` (the largest, or the smallest of a metric to minimise)."""
    return values.max() if metric_mode(metric) == "max" else values.min()


def load_searches(folders: list[Path]) -> dict[Path, tuple[str, pd.DataFrame, pd.DataFrame]]:
    """``{folder: (method, trials, epochs)}``, each folder's ``method_of``, ``load_runs`` and ``load_epochs``;
    MixemError if two paths are of the same folder."""
    searches = {}
    for folder in folders_of(folders):
        trials, epochs = load_runs(folder), load_epochs(folder)  # first: they say when a folder does not exist
        searches[folder] = (method_of(folder), trials, epochs)
    return searches


def efficiency_table(searches: dict[Path, tuple[str, pd.DataFrame, pd.DataFrame]], metric: str,
                     target: float) -> pd.DataFrame:
    """One row per search of ``load_searches``: its method, searcher seed, trials, compute to ``target``
    and in all."""
    finished = pd.concat([trials[trials["status"] == "finished"] for _, trials, _ in searches.values()])
    if finished.empty or finished[f"final/{metric}"].isna().all():
        raise MixemError(f"No finished trial has a value of {metric}; pass folders of finished searches.")
    rows = []
    for folder, (method, trials, epochs) in searches.items():
        working = (epochs["epoch_seconds"] + epochs["eval_seconds"]).groupby(epochs["trial_id"]).sum()
        reached = compute_to_target(trials, working, metric, target)
        rows.append({"search": folder.name, "method": method, "searcher seed": searcher_seed(folder),
                     "trials": len(trials), **reached, "trial-seconds in all": trials["wall_seconds"].sum(),
                     "best found": best_of(trials.loc[trials["status"] == "finished", f"final/{metric}"], metric)})
    return pd.DataFrame(rows)


def searcher_seed(folder: Path):
    """A search folder's searcher seed (``--search-seed``, else its ``--seed``), from its sweep.json."""
    args = sweep_settings(folder)["args"]
    return args.get("search_seed") if args.get("search_seed") is not None else args.get("seed")


def replay_asha(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, grace: int, reduction_factor: int
                ) -> dict:
    """Successive halving with ``grace`` and ``reduction_factor`` replayed on a search whose trials all
    finished: at each rung below the last epoch, the best ``ceil(n / rf)`` trials by their latest
    evaluation of ``metric`` so far go on. The epochs it trains, as a fraction of the full run, and
    the final ``metric`` of the best trial it keeps (vs the best of all trials)."""
    finished = trials.loc[trials["status"] == "finished", ["trial_id", f"final/{metric}", "epochs"]]
    last = int(finished["epochs"].max())
    sign = 1 if metric_mode(metric) == "max" else -1
    # A trial without a value of the metric at an epoch (none yet, or NaN) ranks last there.
    values = epochs[epochs["trial_id"].isin(finished["trial_id"])].pivot_table(
        index="epoch", columns="trial_id", values=metric).reindex(columns=finished["trial_id"]).sort_index().ffill()
    alive, spent, trained_to, rung = list(finished["trial_id"]), 0, 0, grace
    while rung < last and len(alive) > 1:
        spent += (rung - trained_to) * len(alive)
        at_rung = values.loc[:rung].iloc[-1][alive] * sign
        alive = list(at_rung.sort_values(ascending=False, na_position="last")
                     .index[:math.ceil(len(alive) / reduction_factor)])
        trained_to, rung = rung, rung * reduction_factor
    spent += (last - trained_to) * len(alive)
    final = finished.set_index("trial_id")[f"final/{metric}"]
    kept = best_of(final[alive], metric)  # NaN if every trial kept has no value
    best = best_of(final, metric)
    return {"grace": grace, "reduction factor": reduction_factor, "epochs / full run": spent / final.size / last,
            "best kept": kept, "best of all": best, "regret": sign * (best - kept)}


def replay_table(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``replay_asha`` for every grace period at an evaluated epoch up to half the run and
    reduction factors 2, 3 and 4."""
    last = int(trials["epochs"].max())
    evaluated = sorted(int(epoch) for epoch in epochs.loc[epochs[metric].notna(), "epoch"].unique())
    graces = [epoch for epoch in evaluated if epoch <= last // 2] or evaluated[:1]
    return pd.DataFrame([replay_asha(trials, epochs, metric, grace, factor)
                         for grace in graces for factor in (2, 3, 4)])


def summary(table: pd.DataFrame, baseline: str = "grid") -> pd.DataFrame:
    """Per method: median compute to the target over its folders (searcher seeds), how many reached
    it, and the ratio to the ``baseline`` method's median."""
    grouped = table.groupby("method")
    rates = {method: stats.proportion_interval(int(group["reached"].sum()), len(group))
             for method, group in grouped}
    out = pd.DataFrame({
        "runs": grouped.size(),
        "reached": grouped["reached"].sum(),
        "success rate [95% interval]": pd.Series({method: f"{rate:.2f} [{low:.2f}, {high:.2f}]"
                                                  for method, (rate, low, high) in rates.items()}),
        "median trial-seconds to target": grouped["trial-seconds"].median(),
        "median training seconds to target": grouped["training seconds"].median(),
        "median trial-seconds in all": grouped["trial-seconds in all"].median(),
    })
    if baseline in out.index:
        out["trial-seconds / grid's"] = out["median trial-seconds to target"] / out.loc[baseline,
                                                                                    "median trial-seconds to target"]
        out["... / grid's whole run"] = out["median trial-seconds to target"] / out.loc[baseline,
                                                                                    "median trial-seconds in all"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.efficiency", description=__doc__.split("\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("folders", nargs="+", type=Path, help="search folders (tune/sweep.py --output)")
    parser.add_argument("--metric", default=None, help="the score compared (default: the first folder's --metric)")
    parser.add_argument("--target", type=float, required=True,
                        help="the value of the metric a search must reach, fixed before the searches ran")
    args = parser.parse_args(argv)
    try:
        if not math.isfinite(args.target):
            raise MixemError(f"--target must be a finite number, not {args.target}.")
        searches = load_searches(args.folders)
        metric = resolve_metric(args.folders, args.metric)
        low, high = value_bounds(metric)
        if not low <= args.target <= high:
            raise MixemError(f"--target {args.target:g} is outside what {metric} can take ({low:g} to {high:g}), so no "
                             "search could reach it; pass a value in that range.")
        table = efficiency_table(searches, metric, args.target)
        # ASHA is replayed only where every trial ran to the end, so each rung's ranking is known.
        replays = {folder: (len(trials), replay_table(trials, epochs, metric))
                   for folder, (method, trials, epochs) in searches.items()
                   if (trials["status"] == "finished").all() and method in ("grid", "random")}
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        towards = ">=" if metric_mode(metric) == "max" else "<="
        print(f"target: {metric} {towards} {args.target:.4f} (fixed before the searches ran)\n")
        print(table.to_string(index=False))
        print()
        print(summary(table).to_string())
        for folder, (count, replay) in replays.items():
            print(f"\nASHA replayed on {folder.name} ({count} trials, all run to the end):\n")
            print(replay.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
