"""Where the trials of a search can be compared: at epochs they all reached, not at their own last one.

ASHA stops weak trials at its rungs (``--grace-epochs``, then x ``--reduction-factor``), so a
search's final values come from different epochs: an early-stopped trial's from its rung, a
finished trial's from the last epoch. Comparing those mixes training length into the comparison.
``epochs.parquet`` holds every evaluation, so trials compare at one epoch instead:

- the *common point*: the last evaluated epoch that every trial that ended normally (finished or
  early-stopped) reached; errored trials count wherever they have a value;
- the *compared epochs*: the epochs with a value for at least ``MIN_TRIALS`` trials at which some
  trial ended (ASHA's rungs and the last epoch), the common point, and the last epoch that still
  has ``MIN_TRIALS`` trials.

Every function takes the trials and epochs of one search (``search_tables.search_runs``).
"""

from __future__ import annotations

import pandas as pd

from mixem.scores import SCORE_KEYS

# A rank correlation over fewer trials says nothing.
MIN_TRIALS = 3
# The prefix of the score columns of ``at_epoch``, as "final" and "best" are in trials.parquet, so that
# every function that reads ``{stage}/<score>`` reads a common point too.
AT = "at"


def evaluations(epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of ``epochs`` that hold a value of ``metric`` (the evaluated epochs)."""
    return epochs[epochs[metric].notna()]


def common_epoch(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> int | None:
    """The last epoch at which every trial that ended normally has a value of ``metric``; None if none."""
    normal = trials.loc[trials["status"].isin(["finished", "early_stopped"]), "trial_id"]
    evaluated = evaluations(epochs, metric)
    shared = None
    for trial_id in normal:
        reached = set(evaluated.loc[evaluated["trial_id"] == trial_id, "epoch"])
        shared = reached if shared is None else shared & reached
    return int(max(shared)) if shared else None


def compared_epochs(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> list[int]:
    """The epochs the sensitivity reads (see the module docstring), in order; empty when no epoch has
    ``MIN_TRIALS`` trials."""
    evaluated = evaluations(epochs, metric)
    counts = evaluated.groupby("epoch")["trial_id"].nunique()
    enough = counts[counts >= MIN_TRIALS].index
    if enough.empty:
        return []
    normal = set(trials.loc[trials["status"].isin(["finished", "early_stopped"]), "trial_id"])
    ends = set(evaluated[evaluated["trial_id"].isin(normal)].groupby("trial_id")["epoch"].max())
    common = common_epoch(trials, epochs, metric)
    shown = {epoch for epoch in enough if epoch in ends or epoch == common} | {enough.max()}
    return sorted(int(epoch) for epoch in shown)


def at_epoch(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, epoch: int) -> pd.DataFrame:
    """The trials with a value of ``metric`` at ``epoch``, one row each: their trials.parquet columns
    (config, status, ...) with every score at that epoch as ``at/<score>``, in the order of ``trials``."""
    rows = evaluations(epochs, metric)
    rows = rows[rows["epoch"] == epoch]
    scores = rows[["sweep", "trial_id", *SCORE_KEYS]].rename(columns={key: f"{AT}/{key}" for key in SCORE_KEYS})
    return trials.merge(scores, on=["sweep", "trial_id"], how="inner")
