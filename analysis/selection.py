"""Label-free model selection: how well each score computed without labels picks a search's trials.

Without labels a search can only rank by a label-free score (``--metric val_contrastive``,
``mixem.scores.is_label_free``): the validation loss ``val_loss`` and its terms, or a clustering's
silhouette. On a search that did have labels, this asks which of them would have picked well, judged
by the ACC of the reported clustering (``tables.fixed_scores``: the fixed variant, ``kmeans_z_l2``
for the SimCLR head). For each criterion, over the trials that have both values:

- Spearman's rho and Kendall's tau of the criterion with ACC, the criterion oriented by its
  direction (``mixem.scores.metric_mode``: a loss is negated), so a criterion that ranks the trials
  as ACC does scores +1 and one that ranks them backwards -1;
- the regret of selecting by it: ACC of the best trial by ACC (over every trial with an ACC) minus
  ACC of the trial the criterion picks (its best value in its direction); 0 when it picks the best.

    from analysis.selection import label_free_selection
    label_free_selection(trials, epochs, "compinit_z_l2_acc")   # every search, final and common point

    python -m analysis.selection results/digits/optuna-seed* results/fashion-mnist/search

prints, for every criterion, its median rank correlation and regret over the searches given (at
each search's common point: every trial, early-stopped ones included), then each search's table.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau, spearmanr

from analysis import rungs, search_tables, tables
from analysis.runs import load_epochs, load_runs, resolve_metric
from mixem.errors import MixemError
from mixem.scores import DIAGNOSTIC_KEYS, SCORE_KEYS, is_label_free, metric_mode

COLUMNS = ["criterion", "better", "trials", "Spearman", "Kendall", "picks", "its ACC", "regret"]


def criteria(runs: pd.DataFrame, stage: str) -> list[str]:
    """The label-free scores with a value for at least one of ``runs``: the validation losses, then
    each variant's silhouette, in ``SCORE_KEYS`` order (not the mixture's diagnostics, which have no
    better direction)."""
    return [key for key in SCORE_KEYS if is_label_free(key) and key not in DIAGNOSTIC_KEYS
            and runs[f"{stage}/{key}"].notna().any()]


def selection_table(runs: pd.DataFrame, stage: str) -> pd.DataFrame:
    """One row per label-free criterion (``criteria``) that is not the same for every trial, over ``runs``
    (one row per trial, scores as ``{stage}/<score>``; a trials frame, or ``rungs.at_epoch``'s with stage
    "at"): its direction
    ("higher"/"lower"), the trials compared, oriented Spearman and Kendall with ACC, the trial it
    picks, that trial's ACC and the regret. Sorted by regret, then Spearman (best first)."""
    acc = tables.fixed_scores(runs, stage, "acc")
    best_acc = acc.max()
    rows = []
    for key in criteria(runs, stage):
        sign = 1.0 if metric_mode(key) == "max" else -1.0
        oriented = sign * runs[f"{stage}/{key}"]
        both = oriented.notna() & acc.notna()
        x, y = oriented[both], acc[both]
        if x.nunique() < 2:  # the same for every trial (a term the head lacks): it ranks nothing and picks no one
            continue
        varied = y.nunique() > 1
        pick = x.idxmax() if both.any() else None  # among the trials whose pick can be judged
        picked_acc = acc[pick] if pick is not None else math.nan
        rows.append({"criterion": key, "better": "higher" if sign > 0 else "lower", "trials": int(both.sum()),
                     "Spearman": spearmanr(x, y).statistic if varied else math.nan,
                     "Kendall": kendalltau(x, y).statistic if varied else math.nan,
                     "picks": runs.at[pick, "trial_id"] if pick is not None else "",
                     "its ACC": picked_acc, "regret": best_acc - picked_acc})
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = table.assign(by_rho=-table["Spearman"]).sort_values(["regret", "by_rho"], kind="stable",
                                                                na_position="last").index
    return table.loc[order].reset_index(drop=True)


def summarized(table: pd.DataFrame) -> pd.DataFrame:
    """A ``selection_table`` a reader takes in: each validation loss on its own row, and the silhouettes of
    every clustering variant as one row of their medians ("<n> silhouettes, median"), placed by its regret."""
    silhouettes = table["criterion"].str.endswith("_silhouette")
    if silhouettes.sum() < 2:
        return table
    group = table[silhouettes]
    row = {"criterion": f"{len(group)} silhouettes, median", "better": "higher",
           "trials": int(group["trials"].median()), "Spearman": group["Spearman"].median(),
           "Kendall": group["Kendall"].median(), "picks": "", "its ACC": group["its ACC"].median(),
           "regret": group["regret"].median()}
    merged = pd.concat([table[~silhouettes], pd.DataFrame([row])], ignore_index=True)
    return merged.sort_values("regret", kind="stable", na_position="last").reset_index(drop=True)


def best_by_acc(runs: pd.DataFrame, stage: str) -> tuple[str, float] | None:
    """``(trial_id, ACC)`` of the trial of ``runs`` with the highest ACC of its reported clustering
    (None if none has one): the trial every regret is measured from."""
    acc = tables.fixed_scores(runs, stage, "acc")
    return (runs.at[acc.idxmax(), "trial_id"], float(acc.max())) if acc.notna().any() else None


def search_points(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> dict[str, tuple[pd.DataFrame, str]]:
    """Where one search's trials are compared: ``{point: (frame, stage)}``, "final" (the finished
    trials' last evaluation) and, when there is one, "epoch E (common point)" (every trial that
    reached it, from ``epochs``)."""
    points = {"final": (tables.finished(runs), "final")}
    epoch = rungs.common_epoch(runs, epochs, metric)
    if epoch is not None:
        points[f"epoch {epoch} (common point)"] = (rungs.at_epoch(runs, epochs, metric, epoch), rungs.AT)
    return points


def label_free_selection(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``selection_table`` of every search (``search_tables.searches``) at each of its ``search_points``,
    one frame: columns sweep, dataset, point, then ``COLUMNS``. ``metric`` (the sweep's) only
    places the common point."""
    frames = []
    for sweep, dataset in search_tables.searches(trials):
        runs, runs_epochs = search_tables.search_runs(trials, epochs, sweep, dataset)
        for point, (frame, stage) in search_points(runs, runs_epochs, metric).items():
            table = selection_table(frame, stage)
            frames.append(table.assign(sweep=sweep, dataset=dataset, point=point))
    columns = ["sweep", "dataset", "point", *COLUMNS]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def across_searches(selection: pd.DataFrame) -> pd.DataFrame:
    """Per criterion and point kind ("final", "common point"), over the searches of ``selection``
    (``label_free_selection``'s frame): how many searches, the median Spearman and Kendall, the
    median and largest regret, and in how many searches it picked a trial within one ACC point of the
    best. Sorted by median regret, then median Spearman."""
    frame = selection.assign(kind=selection["point"].where(selection["point"] == "final", "common point"),
                             close=selection["regret"] <= 0.01)
    grouped = frame.groupby(["kind", "criterion"])
    out = pd.DataFrame({"better": grouped["better"].first(), "searches": grouped.size(),
                        "median Spearman": grouped["Spearman"].median(),
                        "median Kendall": grouped["Kendall"].median(),
                        "median regret": grouped["regret"].median(), "largest regret": grouped["regret"].max(),
                        "within 1 point": grouped["close"].sum()}).reset_index()
    out = out.assign(by_rho=-out["median Spearman"]).sort_values(["kind", "median regret", "by_rho"])
    return out.drop(columns="by_rho").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.selection",
                                     description="How well each label-free score would have picked the trials of "
                                                 "the searches given, judged by the fixed variant's ACC.",
                                     allow_abbrev=False)
    parser.add_argument("folders", nargs="+", type=Path, help="search folders (tune/sweep.py --output)")
    args = parser.parse_args(argv)
    try:
        trials, epochs = load_runs(*args.folders), load_epochs(*args.folders)
        metric = resolve_metric(args.folders, None)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    selection = label_free_selection(trials, epochs, metric)
    if selection.empty:
        print("error: none of these folders holds a search with a label-free score; pass tune/sweep.py "
              "--output folders.", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(f"Over {selection['sweep'].nunique()} searches (regret: best ACC minus the picked trial's ACC)\n")
        print(across_searches(selection).to_string(index=False))
        for (sweep, point), table in selection.groupby(["sweep", "point"], sort=False):
            print(f"\n{sweep}, {point}:\n")
            print(table.drop(columns=["sweep", "dataset", "point"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
