"""The report's figures, one function each, from the frames of ``analysis.runs``.

Each returns a matplotlib ``Figure`` (one row of axes per dataset), or None when the runs hold
nothing to draw. Figures are built without pyplot: no global state, any backend, and a
notebook shows them with ``display(figure)``. ACC is chosen as in ``analysis.tables``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.tables import best_variant, finished, searched
from mixem.config import LOSS_WEIGHTS
from mixem.presets import COMPONENT_ABLATION, LOSS_ABLATION
from mixem.scores import NORMS, REPRESENTATIONS

ABLATION_ROWS = [*LOSS_ABLATION, *COMPONENT_ABLATION]


def _figure(rows: int, columns: int, width: float = 3.4, height: float = 2.8) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)


def _offsets(count: int, width: float = 0.3) -> np.ndarray:
    """Horizontal offsets that spread ``count`` points of one x value apart (no randomness, so a
    report is reproducible)."""
    return np.linspace(-width / 2, width / 2, count) if count > 1 else np.zeros(count)


def weights_figure(trials: pd.DataFrame, stage: str = "final") -> Figure | None:
    """ACC against each loss weight, one point per finished search trial, coloured by K."""
    runs = searched(trials)
    datasets = sorted(runs["dataset"].unique())
    if not datasets:
        return None
    figure, axes = _figure(len(datasets), len(LOSS_WEIGHTS))
    for row, dataset in enumerate(datasets):
        group = runs[runs["dataset"] == dataset]
        variant = best_variant(group, stage)
        counts = sorted(group["config/num_components"].unique())
        colours = colormaps["viridis"](np.linspace(0, 0.9, len(counts)))
        for column, weight in enumerate(LOSS_WEIGHTS):
            ax = axes[row, column]
            ax.set_xlabel(weight)
            if variant is None:
                continue
            for count, colour in zip(counts, colours, strict=True):
                of_count = group[group["config/num_components"] == count]
                ax.scatter(of_count[f"config/{weight}"], of_count[f"{stage}/{variant}_acc"], s=18, color=colour,
                           label=f"K={count}")
            positive = group.loc[group[f"config/{weight}"] > 0, f"config/{weight}"]
            if not positive.empty and positive.max() > 10 * positive.min():
                # Weights span decades and may be 0 (term off): linear near 0, logarithmic beyond.
                ax.set_xscale("symlog", linthresh=float(positive.min()))
        axes[row, 0].set_ylabel(f"{dataset}: ACC ({variant})")
        axes[row, -1].legend(fontsize="small")
    return figure


def components_figure(trials: pd.DataFrame, stage: str = "final") -> Figure | None:
    """ACC against K (runs of ``COMPONENT_ABLATION``): one point per seed, mean ± std as a line."""
    runs = finished(trials)
    runs = runs[runs["preset"].isin(COMPONENT_ABLATION)]
    datasets = sorted(runs["dataset"].unique())
    if not datasets:
        return None
    figure, axes = _figure(1, len(datasets))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        group = runs[runs["dataset"] == dataset]
        counts, means, stds = [], [], []
        for count in sorted(group["config/num_components"].unique()):
            of_count = group[group["config/num_components"] == count]
            variant = best_variant(of_count, stage)
            if variant is None:
                continue
            acc = of_count[f"{stage}/{variant}_acc"].dropna()
            # K at evenly spaced positions: the paper's K double (10, 20, 40), a log scale in effect.
            ax.scatter(len(counts) + _offsets(len(acc)), acc, s=14, color="grey")
            counts.append(int(count))
            means.append(acc.mean())
            stds.append(acc.std(ddof=1) if len(acc) > 1 else 0.0)
        ax.errorbar(range(len(counts)), means, yerr=stds, marker="o", capsize=3)
        ax.set_xticks(range(len(counts)), [str(count) for count in counts])
        ax.set_xlim(-0.5, len(counts) - 0.5)
        ax.set_xlabel("K (mixture components)")
        ax.set_ylabel("ACC (best K-means variant per K)")
        ax.set_title(dataset)
    return figure


def learning_curves_figure(trials: pd.DataFrame, epochs: pd.DataFrame) -> Figure | None:
    """Per trial, the total loss and ``acc_max`` (the best clustering at each evaluated epoch)
    against the epoch; ablation presets in colour, search trials in grey."""
    epochs = epochs.merge(trials[["sweep", "trial_id", "dataset"]], on=["sweep", "trial_id"])
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
            evaluated = curve[curve["acc_max"].notna()]
            acc_ax.plot(evaluated["epoch"], evaluated["acc_max"], marker=".", **style)
        loss_ax.set_ylabel(f"{dataset}: total loss")
        acc_ax.set_ylabel("ACC (acc_max: best variant)")
        for ax in (loss_ax, acc_ax):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        loss_ax.legend(fontsize="small")
    return figure


def spread_figure(trials: pd.DataFrame, stage: str = "final") -> Figure | None:
    """ACC of every seed for each ablation row (loss, then component presets), with the mean."""
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
            of_preset = group[group["preset"] == preset]
            variant = best_variant(of_preset, stage)
            if variant is None:
                continue
            acc = of_preset[f"{stage}/{variant}_acc"].dropna()
            ax.scatter(x + _offsets(len(acc)), acc, s=16, color="tab:blue")
            ax.hlines(acc.mean(), x - 0.25, x + 0.25, color="black")
        ax.set_xticks(range(len(presets)), presets, rotation=45, ha="right")
        ax.set_ylabel("ACC (best K-means variant per row)")
        ax.set_title(f"{dataset}: spread over seeds")
    return figure


def kmeans_spread_figure(trials: pd.DataFrame, stage: str = "final", preset: str = "mixem") -> Figure | None:
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
