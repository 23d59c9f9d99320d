"""The tables of one search (the trials of preset "" of one sweep folder and dataset, ``search_runs``): its top
trials, the sensitivity of the metric to each searched value and Optuna's importances, ranked by the sweep's
metric in its direction, and its best finished trial against the no-learning baselines.
"""

from __future__ import annotations

import math

import optuna
import pandas as pd
from scipy.stats import spearmanr

from analysis import baselines as baselines_mod
from analysis import rungs
from analysis.tables import (
    METRIC_COLUMNS,
    check_stage,
    finished,
    fixed_scores,
    is_number,
    number,
    python_value,
    ranked,
    value_range,
    value_text,
)
from mixem.config import LOSS_WEIGHTS
from mixem.scores import (
    FIXED_VARIANT,
    metric_mode,
    reported_variant,
)

# Optuna's importance evaluators, seeded so that a report is reproducible.
IMPORTANCE_EVALUATORS = {
    "fANOVA": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
    "MDI": lambda: optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0),
}


# Importances from fewer trials than this are noise; the report says so instead.
MIN_IMPORTANCE_TRIALS = 8


# A search's sensitivity and label-free selection need at least this many trials; the report says so instead.
MIN_SEARCH_TRIALS = 6


# Config fields that are not hyperparameters of a search.
NOT_SEARCHED = ("dataset",)


def best_search_verdict(runs: pd.DataFrame, baselines: pd.DataFrame, dataset: str, metric: str) -> str | None:
    """``analysis.baselines.verdict_line`` for a search's best finished trial by ``metric``: its reported
    clustering's final ACC against the strongest no-learning baseline; None without a finished trial."""
    done = finished(runs).dropna(subset=[f"final/{metric}"])
    if done.empty:
        return None
    best = done.loc[ranked(done[f"final/{metric}"], metric).index[0]]
    variant = reported_variant(best["config/head"])
    return baselines_mod.verdict_line(best[f"final/{variant}_acc"], f"the best finished trial of search "
                                      f"`{best['sweep']}` by `{metric}` ({best['trial_id']}, {variant})",
                                      baselines, dataset)


def searches(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """``(sweep, dataset)`` of every search (trials of preset ""), sorted."""
    runs = trials[trials["preset"] == ""]
    return sorted(set(zip(runs["sweep"], runs["dataset"], strict=True)))


def search_runs(trials: pd.DataFrame, epochs: pd.DataFrame, sweep: str, dataset: str
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials and the epochs of one search (see ``searches``)."""
    runs = search_trials(trials, sweep, dataset)
    return runs, epochs[(epochs["sweep"] == sweep) & epochs["trial_id"].isin(runs["trial_id"])]


def search_trials(trials: pd.DataFrame, sweep: str, dataset: str) -> pd.DataFrame:
    """The trials of one search (preset "" of one sweep folder, on one dataset)."""
    return trials[(trials["sweep"] == sweep) & (trials["dataset"] == dataset) & (trials["preset"] == "")]


def searched_parameters(runs: pd.DataFrame) -> list[str]:
    """The config fields that take more than one value among ``runs`` (a search's trials), in config order."""
    fields = [column.removeprefix("config/") for column in runs.columns if column.startswith("config/")]
    return [name for name in fields if name not in NOT_SEARCHED and runs[f"config/{name}"].nunique() > 1]


def never_tried(runs: pd.DataFrame) -> list[str]:
    """The loss weights (``mixem.config.LOSS_WEIGHTS``) that are 0 in every trial of a search: the terms it
    says nothing about."""
    return [name for name in LOSS_WEIGHTS if not runs.empty and (runs[f"config/{name}"] == 0).all()]


def top_trials(runs: pd.DataFrame, metric: str, stage: str, count: int) -> pd.DataFrame:
    """The ``count`` best trials of a search by ``metric`` (at ``stage``), of any status: the trial,
    every searched value, the metric (unless it is the fixed ACC itself), ACC, NMI and ARI of the
    reported clustering, and the epochs it ran and how it ended."""
    check_stage(stage)
    parameters = searched_parameters(runs)
    best = runs.loc[ranked(runs[f"{stage}/{metric}"], metric).index[:count]]
    shown_metric = [] if metric == f"{FIXED_VARIANT}_acc" else [metric]
    table = pd.DataFrame({"trial": best["trial_id"],
                          **{name: best[f"config/{name}"].map(value_text) for name in parameters},
                          **{key: best[f"{stage}/{key}"].map(number) for key in shown_metric},
                          **{column: fixed_scores(best, stage, key).map(number)
                             for column, key in METRIC_COLUMNS.items()},
                          "epochs": best["epochs"], "status": best["status"]})
    return table.reset_index(drop=True)


def sensitivity_table(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Spearman's rho of each searched parameter with ``metric``, over the trials that reached each
    compared epoch (``rungs.compared_epochs``: the common point and ASHA's rungs), early-stopped
    trials included: one row per parameter, its values, then one column per epoch,
    "epoch E (n=N)". A parameter that is not a number, or takes one value among a column's trials,
    reads "—"."""
    parameters = searched_parameters(runs)
    table = pd.DataFrame({"parameter": parameters,
                          "values": [value_range(runs[f"config/{name}"]) for name in parameters]})
    for epoch in rungs.compared_epochs(runs, epochs, metric):
        reached = rungs.at_epoch(runs, epochs, metric, epoch)
        scores = reached[f"{rungs.AT}/{metric}"]
        rhos = []
        for name in parameters:
            values = reached[f"config/{name}"]
            ranked = is_number(values) and values.nunique() > 1 and scores.nunique() > 1
            rhos.append(number(spearmanr(values.astype(float), scores).statistic if ranked else math.nan))
        table[f"epoch {epoch} (n={len(reached)})"] = rhos
    return table


def importance_table(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The importance of each searched parameter for ``metric`` at the common point, by Optuna's
    fANOVA and mean-decrease-impurity evaluators (seeded; each sums to 1 over the parameters), on a
    study rebuilt from the trials that reached it. No rows below ``MIN_IMPORTANCE_TRIALS`` trials."""
    columns = ["parameter", *IMPORTANCE_EVALUATORS]
    epoch = rungs.common_epoch(runs, epochs, metric)
    reached = rungs.at_epoch(runs, epochs, metric, epoch) if epoch is not None else runs.iloc[:0]
    if len(reached) < MIN_IMPORTANCE_TRIALS:
        return pd.DataFrame(columns=columns)
    parameters = searched_parameters(runs)
    varied = [name for name in parameters if reached[f"config/{name}"].nunique() > 1]
    importances = param_importances(reached, reached[f"{rungs.AT}/{metric}"], varied, metric_mode(metric))
    rows = [{"parameter": name, **{evaluator: number(importance.get(name, math.nan))
                                   for evaluator, importance in importances.items()}} for name in parameters]
    return pd.DataFrame(rows, columns=columns)


def param_importances(runs: pd.DataFrame, values: pd.Series, parameters: list[str], mode: str
                      ) -> dict[str, dict[str, float]]:
    """``{evaluator: {parameter: importance}}`` from Optuna's evaluators, on a study rebuilt from
    ``runs`` (each a complete trial whose value is its ``values``), maximised or minimised (``mode``)."""
    if not parameters:
        return {evaluator: {} for evaluator in IMPORTANCE_EVALUATORS}
    distributions = {name: _distribution(runs[f"config/{name}"]) for name in parameters}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" per table
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
        study.add_trials([
            optuna.trial.create_trial(params={name: python_value(row[f"config/{name}"]) for name in parameters},
                                      distributions=distributions, value=float(value))
            for (_, row), value in zip(runs.iterrows(), values, strict=True)
        ])
        return {evaluator: optuna.importance.get_param_importances(study, evaluator=make(), params=parameters)
                for evaluator, make in IMPORTANCE_EVALUATORS.items()}
    finally:
        optuna.logging.set_verbosity(verbosity)


def _distribution(values: pd.Series):
    """The smallest Optuna distribution holding every value of one config column."""
    if not is_number(values):
        return optuna.distributions.CategoricalDistribution(sorted(map(python_value, values.unique()), key=str))
    if pd.api.types.is_integer_dtype(values):
        return optuna.distributions.IntDistribution(int(values.min()), int(values.max()))
    return optuna.distributions.FloatDistribution(float(values.min()), float(values.max()))
