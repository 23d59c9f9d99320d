"""How a table reads a score and writes a cell, shared by the ablation tables (``analysis.ablation_tables``) and
the search tables (``analysis.search_tables``), which build on the frames of ``analysis.runs``.

Conventions shared by every table (docs/analysis.md explains them):

- An ablation row averages the *finished* trials it holds (its seeds); early-stopped and errored
  trials only count in ``cost_table``. A cell reads ``mean ± std (n=N)``, std over seeds with
  ddof=1; one seed reads ``0.812 (n=1)``; no value at all reads "—".
- Metrics are read at ``stage="final"``, the last evaluation of each trial. ``stage="best"``
  reads them at the evaluation where the sweep's --metric was best: an epoch picked with the
  labels when the metric uses them, so optimistic.
- One clustering is reported, fixed before any sweep ran: ``mixem.scores.FIXED_VARIANT``
  (``compinit_z_l2``), or ``kmeans_z_l2`` for runs of the SimCLR head, which has no mixture
  components to initialise K-means with (``reported_variant``). No table picks a variant by its
  ACC; the K-means ablation shows every variant side by side, and ``acc_max`` (the best variant
  per trial, chosen with the test labels) appears only as the labelled oracle.
"""

from __future__ import annotations

import math

import pandas as pd

from mixem.config import FIELDS
from mixem.presets import ABLATIONS
from mixem.scores import FIXED_VARIANT, SIMCLR_VARIANT, metric_mode

STAGES = ("final", "best")


EMPTY = "—"


NO_RUN = "no finished run"


METRIC_COLUMNS = {"ACC": "acc", "NMI": "nmi", "ARI": "ari"}


def cell(values) -> str:
    """``mean ± std (n=N)`` of the non-NaN ``values`` (std with ddof=1), ``x (n=1)``, or "—"."""
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return EMPTY
    if len(values) == 1:
        return f"{values.iloc[0]:.3f} (n=1)"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f} (n={len(values)})"


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"] == "finished"]


def head_of(runs: pd.DataFrame, preset: str) -> str:
    """The projection head of ``runs`` (one preset's trials), or of ``preset`` when there are none."""
    if not runs.empty:
        return runs["config/head"].iloc[0]
    return ABLATIONS.get(preset, {}).get("head", FIELDS["head"].default)


def fixed_scores(runs: pd.DataFrame, stage: str | None, metric: str) -> pd.Series:
    """Per row, ``metric`` ("acc", "nmi" or "ari") of its trial's reported clustering
    (``reported_variant`` of ``config/head``), read from ``{stage}/<score>``, or from ``<score>``
    for stage None (the rows of epochs.parquet)."""
    prefix = f"{stage}/" if stage else ""
    simclr = runs["config/head"] == "simclr"
    return runs[f"{prefix}{FIXED_VARIANT}_{metric}"].where(~simclr, runs[f"{prefix}{SIMCLR_VARIANT}_{metric}"])


def metric_cells(runs: pd.DataFrame, variant: str, stage: str) -> dict[str, str]:
    """``{"ACC", "NMI", "ARI"}`` cells of one clustering variant over ``runs`` (finished trials);
    ACC reads "no finished run" when there are none."""
    if runs.empty:
        return {"ACC": NO_RUN, "NMI": EMPTY, "ARI": EMPTY}
    return {column: cell(runs[f"{stage}/{variant}_{metric}"]) for column, metric in METRIC_COLUMNS.items()}


def check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")


def status_counts(runs: pd.DataFrame) -> str:
    """"2 early_stopped, 4 finished": the trials of ``runs`` by status."""
    counts = runs["status"].value_counts()
    return ", ".join(f"{counts[status]} {status}" for status in sorted(counts.index))


def by_seed(values: pd.Series, runs: pd.DataFrame) -> pd.Series:
    """``values`` (one per run of ``runs``) indexed by the runs' seed; runs of one seed (the same preset in
    two sweep folders) are averaged."""
    return values.groupby(runs["config/seed"].to_numpy()).mean().dropna()


def reported_by_seed(runs: pd.DataFrame, stage: str, metric: str = "acc") -> pd.Series:
    """``metric`` of each run's reported clustering (``reported_variant`` of its head), by seed."""
    return by_seed(fixed_scores(runs, stage, metric), runs)


def seed_noise(runs: pd.DataFrame, stage: str) -> float:
    """The mean over ``runs`` of the within-model noise of their reported clustering: the std of its ACC
    over K-means random states (``mixem.scores.NOISE_KEYS``); NaN where it was not measured."""
    if runs.empty:
        return math.nan
    simclr = runs["config/head"] == "simclr"
    noise = runs[f"{stage}/{FIXED_VARIANT}_acc_seed_std"].where(~simclr, runs[f"{stage}/{SIMCLR_VARIANT}_acc_seed_std"])
    return float(noise.mean())


def ranked(values: pd.Series, metric: str) -> pd.Series:
    """``values`` without NaN, best first by ``metric``'s direction; ties keep their order."""
    return values.dropna().sort_values(ascending=metric_mode(metric) == "min", kind="stable")


def is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def value_range(values: pd.Series) -> str:
    """"0.5 to 8", "0.1 (fixed)", or the choices of a categorical field."""
    if values.nunique() < 2:
        return f"{value_text(values.iloc[0])} (fixed)"
    if is_number(values):
        return f"{value_text(values.min())} to {value_text(values.max())}"
    return ", ".join(sorted(map(value_text, values.unique())))


def value_text(value) -> str:
    """A config value as a table shows it: 3 significant digits for a float."""
    value = python_value(value)
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def number(value: float) -> str:
    """A score or statistic with 3 decimals, "—" for NaN."""
    return EMPTY if value is None or math.isnan(value) else f"{value:.3f}"


def python_value(value):
    """A NumPy scalar as the Python value Optuna expects."""
    return value.item() if hasattr(value, "item") else value
