"""The report's figures, one function each, from the frames of ``analysis.runs``.

Each returns a matplotlib ``Figure`` (one row or column of axes per dataset, or one search's), or
None when the runs hold nothing to draw. Figures are built without pyplot: no global state, any
backend, and a notebook shows them with ``display(figure)``. ACC is the reported clustering's, as
in ``analysis.tables``: the fixed variant, ``kmeans_z_l2`` for the SimCLR head.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from analysis import rungs, tables
from analysis.tables import finished, fixed_scores, is_number, reported_variant, searched_parameters, value_text
from mixem.presets import COMPONENT_ABLATION, LOSS_ABLATION
from mixem.scores import FIXED_VARIANT, NORMS, REPRESENTATIONS

FIXED_ACC_LABEL = f"ACC: {FIXED_VARIANT}\n(SimCLR head: {reported_variant('simclr')})"
# How each trial of a search ended, as the search figure colours it.
STATUS_COLOURS = {"finished": "tab:blue", "early_stopped": "tab:orange", "errored": "tab:red"}

ABLATION_ROWS = [*LOSS_ABLATION, *COMPONENT_ABLATION]
SEARCH_FIGURE_COLUMNS = 4


def _figure(rows: int, columns: int, width: float = 3.4, height: float = 2.8) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)


def _offsets(count: int, width: float = 0.3) -> np.ndarray:
    """Horizontal offsets that spread ``count`` points of one x value apart (no randomness, so a
    report is reproducible)."""
    return np.linspace(-width / 2, width / 2, count) if count > 1 else np.zeros(count)


def components_figure(trials: pd.DataFrame, stage: str) -> Figure | None:
    """ACC of the fixed clustering against K (the runs of the component-count table,
    ``tables.component_runs``): one point per seed, mean ± std as a line."""
    done = finished(trials)
    datasets = sorted(done.loc[done["preset"].isin(COMPONENT_ABLATION), "dataset"].unique())
    if not datasets:
        return None
    figure, axes = _figure(1, len(datasets))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        group = tables.component_runs(done, dataset)
        counts, means, stds = [], [], []
        for count in sorted(group["config/num_components"].unique()):
            acc = group.loc[group["config/num_components"] == count, f"{stage}/{FIXED_VARIANT}_acc"].dropna()
            if acc.empty:
                continue
            # K at evenly spaced positions: the paper's K double (10, 20, 40), a log scale in effect.
            ax.scatter(len(counts) + _offsets(len(acc)), acc, s=14, color="grey")
            counts.append(int(count))
            means.append(acc.mean())
            stds.append(acc.std(ddof=1) if len(acc) > 1 else 0.0)
        ax.errorbar(range(len(counts)), means, yerr=stds, marker="o", capsize=3)
        ax.set_xticks(range(len(counts)), [str(count) for count in counts])
        ax.set_xlim(-0.5, len(counts) - 0.5)
        ax.set_xlabel("K (mixture components)")
        ax.set_ylabel(f"ACC ({FIXED_VARIANT})")
        ax.set_title(dataset)
    return figure


def learning_curves_figure(trials: pd.DataFrame, epochs: pd.DataFrame) -> Figure | None:
    """Per trial, the total loss and the ACC of its reported clustering at each evaluated epoch
    against the epoch; ablation presets in colour, search trials in grey."""
    epochs = epochs.merge(trials[["sweep", "trial_id", "dataset", "config/head"]], on=["sweep", "trial_id"])
    epochs = epochs.assign(acc=fixed_scores(epochs, None, "acc"))
    datasets = sorted(epochs["dataset"].unique())
    if not datasets:
        return None
    presets = [preset for preset in ABLATION_ROWS if preset in set(epochs["preset"])]
    presets += sorted(set(epochs["preset"]) - {*presets, ""})
    colours = dict(zip(presets, colormaps["tab10"](np.arange(len(presets)) % 10), strict=True))
    figure, axes = _figure(len(datasets), 2, width=4.5)
    for row, dataset in enumerate(datasets):
        loss_ax, acc_ax = axes[row]
        labelled = set()
        for _, curve in epochs[epochs["dataset"] == dataset].groupby(["sweep", "trial_id"], sort=True):
            curve = curve.sort_values("epoch")
            preset = curve["preset"].iloc[0]
            style = {"color": colours[preset], "lw": 1.2} if preset else {"color": "grey", "lw": 0.6, "alpha": 0.6}
            label = (preset or "search") if (preset or "search") not in labelled else None
            labelled.add(preset or "search")
            loss_ax.plot(curve["epoch"], curve["loss_total"], label=label, **style)
            evaluated = curve[curve["acc"].notna()]
            acc_ax.plot(evaluated["epoch"], evaluated["acc"], marker=".", **style)
        loss_ax.set_ylabel(f"{dataset}: total loss")
        acc_ax.set_ylabel(FIXED_ACC_LABEL)
        for ax in (loss_ax, acc_ax):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        loss_ax.legend(fontsize="small")
    return figure


def spread_figure(trials: pd.DataFrame, stage: str) -> Figure | None:
    """ACC of every seed for each ablation row (loss, then component presets), with the mean: the
    fixed clustering, ``kmeans_z_l2`` for the SimCLR head."""
    runs = finished(trials)
    runs = runs[runs["preset"].isin(ABLATION_ROWS)]
    datasets = sorted(runs["dataset"].unique())
    if not datasets:
        return None
    figure, axes = _figure(1, len(datasets), width=5.0, height=3.4)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        group = runs[runs["dataset"] == dataset]
        presets = [preset for preset in ABLATION_ROWS if preset in set(group["preset"])]
        for x, preset in enumerate(presets):
            acc = fixed_scores(group[group["preset"] == preset], stage, "acc").dropna()
            if acc.empty:
                continue
            ax.scatter(x + _offsets(len(acc)), acc, s=16, color="tab:blue")
            ax.hlines(acc.mean(), x - 0.25, x + 0.25, color="black")
        ax.set_xticks(range(len(presets)), presets, rotation=45, ha="right")
        ax.set_ylabel(FIXED_ACC_LABEL)
        ax.set_title(f"{dataset}: spread over seeds")
    return figure


def kmeans_spread_figure(trials: pd.DataFrame, stage: str, preset: str = "mixem") -> Figure | None:
    """ACC of every seed of ``preset``'s runs, k-means++ beside component-mean init, for each
    representation and norm: the paper's claim that component init is higher and steadier."""
    runs = finished(trials)
    runs = runs[runs["preset"] == preset]
    datasets = sorted(runs["dataset"].unique())
    if not datasets:
        return None
    pairs = [(rep, norm) for rep in REPRESENTATIONS for norm in NORMS]
    figure, axes = _figure(1, len(datasets), width=5.0, height=3.4)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        group = runs[runs["dataset"] == dataset]
        for x, (rep, norm) in enumerate(pairs):
            for shift, method, colour in ((-0.2, "kmeans", "tab:orange"), (0.2, "compinit", "tab:blue")):
                acc = group[f"{stage}/{method}_{rep}_{norm}_acc"].dropna()
                label = {"kmeans": "k-means++", "compinit": "component-mean init"}[method] if x == 0 else None
                ax.scatter(x + shift + _offsets(len(acc), 0.15), acc, s=14, color=colour, label=label)
        ax.set_xticks(range(len(pairs)), [f"{rep} {norm}" for rep, norm in pairs])
        ax.set_ylabel("ACC")
        ax.set_title(f"{dataset}: {preset}, one point per seed")
        ax.legend(fontsize="small")
    return figure


def search_figure(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> Figure | None:
    """One search's ``metric`` against each searched value, every trial that reached the common
    point (``rungs.common_epoch``) a dot coloured by how it ended; a logarithmic x axis where a value
    spans decades (symmetric-log when it may be 0, a term switched off)."""
    parameters = searched_parameters(runs)
    epoch = rungs.common_epoch(runs, epochs, metric)
    if not parameters or epoch is None:
        return None
    reached = rungs.at_epoch(runs, epochs, metric, epoch)
    columns = min(len(parameters), SEARCH_FIGURE_COLUMNS)
    figure, axes = _figure(-(-len(parameters) // columns), columns, width=3.0)
    for ax in axes.flat[len(parameters):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, parameters, strict=False):
        values = reached[f"config/{name}"]
        if is_number(values):
            x = values.astype(float)
        else:  # a choice: evenly spaced positions, labelled
            choices = sorted(values.unique(), key=value_text)
            x = values.map({choice: index for index, choice in enumerate(choices)})
            ax.set_xticks(range(len(choices)), [value_text(choice) for choice in choices])
        for status, colour in STATUS_COLOURS.items():
            ended = reached["status"] == status
            if ended.any():
                ax.scatter(x[ended], reached.loc[ended, f"{rungs.AT}/{metric}"], s=18, color=colour, label=status)
        positive = x[x > 0] if is_number(values) else x.iloc[:0]
        if not positive.empty and positive.max() > 10 * positive.min():
            if (x <= 0).any():
                ax.set_xscale("symlog", linthresh=float(positive.min()))
            else:
                ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labels at every minor tick overlap
        ax.set_xlabel(name)
    for row in axes:
        row[0].set_ylabel(f"{metric}")
    axes[0, -1].legend(fontsize="small")
    figure.suptitle(f"{len(reached)} trials at epoch {epoch}, the last epoch all reached")
    return figure
