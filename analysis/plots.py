"""The report's figures, one function each, from the frames of ``analysis.runs``.

Each returns a matplotlib ``Figure`` (one row or column of axes per dataset, or one search's), or
None when the runs hold nothing to draw. Figures are built without pyplot: no global state, any
backend, and a notebook shows them with ``display(figure)``. ACC is the reported clustering's, as
in ``analysis.tables``: the fixed variant, ``kmeans_z_l2`` for the SimCLR head. Where a dataset has
no-learning baselines (``analysis.baselines``), the strongest is a dashed line with its 95% interval
shaded, so a reader sees at a glance whether training beat clustering the pixels. Axes are named in
words, not column names; every figure is deterministic (points of one x value are spread evenly).
"""

from __future__ import annotations

import math
import re
import textwrap

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullFormatter, NullLocator

from analysis import rungs, stats
from analysis.ablation_tables import LOSS_ROWS, component_runs
from analysis.baselines import strongest
from analysis.search_tables import searched_parameters
from analysis.tables import finished, fixed_scores, is_number, value_text
from mixem.baselines import BASELINES
from mixem.config import FIELDS
from mixem.presets import ABLATIONS, COMPONENT_ABLATION, LOSS_ABLATION
from mixem.scores import LOSS_TERMS, NORMS, ORACLE_METRIC, REPRESENTATIONS, VARIANTS

ACC_LABEL = "clustering accuracy (ACC)"
REPORTED_ACC_LABEL = "ACC of the reported clustering"
LOSS_LABEL = "contrastive loss (NT-Xent)"
COMPONENTS_LABEL = "number of mixture components K"
DIFFERENCE_LABEL = "difference in ACC, A - B (95% interval, paired by seed)"
# How each trial of a search ended, as the search figure colours it.
STATUS_COLOURS = {"finished": "tab:blue", "early_stopped": "tab:orange", "errored": "tab:red"}
# Colour and marker of each verdict of a comparison (``analysis.stats``), in the legend's order.
VERDICT_STYLES = {stats.HOLDS: ("tab:green", "o"), stats.FAILS: ("tab:red", "s"), stats.INCONCLUSIVE: ("grey", "D")}
# Config fields as an axis names them; any other field by its help text (``parameter_label``).
PARAMETER_NAMES = {
    "w_entropy": "weight of term (i), marginal entropy",
    "w_instance": "weight of term (ii), instance",
    "w_pull": "weight of pull (iii)",
    "w_push": "weight of push (iii)",
    "num_components": "number of components K",
    "lr": "learning rate",
    "temperature": "NT-Xent temperature",
}
METRIC_NAMES = {"acc": ACC_LABEL, "nmi": "normalised mutual information (NMI)", "ari": "adjusted Rand index (ARI)",
                "silhouette": "silhouette (label-free)"}
REPRESENTATION_NAMES = {"h": "backbone h", "z": "embedding z", "dom": "dominant e_k"}
NORM_NAMES = {"raw": "raw", "l2": "L2-normalised"}
# Longest axis label or tick label, in characters, before it is shortened.
LABEL_CHARACTERS = 48

ABLATION_ROWS = [*LOSS_ABLATION, *COMPONENT_ABLATION]
SEARCH_FIGURE_COLUMNS = 4


def _figure(rows: int, columns: int, width: float = 3.4, height: float = 2.8) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)


def _offsets(count: int, width: float = 0.3) -> np.ndarray:
    """Horizontal offsets that spread ``count`` points of one x value apart (no randomness, so a
    report is reproducible)."""
    return np.linspace(-width / 2, width / 2, count) if count > 1 else np.zeros(count)


def _shorten(text: str, width: int = LABEL_CHARACTERS) -> str:
    """``text`` cut at a word to at most ``width`` characters, "…" marking the cut."""
    return textwrap.shorten(text, width=width, placeholder="…")


def parameter_label(name: str) -> str:
    """A config field as an axis names it: ``PARAMETER_NAMES``, else its help text without asides and,
    when long, up to its first clause (then shortened), else the name itself."""
    if name in PARAMETER_NAMES:
        return PARAMETER_NAMES[name]
    if name not in FIELDS:
        return name
    text = FIELDS[name].metadata.get("help", name).replace("%%", "%")  # help is argparse text: "%%" is "%"
    text = re.sub(r" \([^()]* [^()]*\)", "", text)  # asides such as "(colour images only)", not "(ii)"
    for mark in (": ", ", "):
        if len(text) > LABEL_CHARACTERS and text.find(mark) >= 15:  # a shorter first clause names too little
            text = text[:text.find(mark)]
    return _shorten(text)


def metric_label(metric: str) -> str:
    """A score key as an axis names it: "clustering accuracy (ACC), compinit_z_l2" for
    ``compinit_z_l2_acc``; the validation loss and its terms in words; else the key itself."""
    variant, _, measure = metric.rpartition("_")
    if variant in VARIANTS and measure in METRIC_NAMES:
        return f"{METRIC_NAMES[measure]}, {variant}"
    if metric == ORACLE_METRIC:
        return "best ACC of any clustering (oracle)"
    if metric == "val_loss":
        return "validation loss"
    if metric.startswith("val_") and metric.removeprefix("val_") in LOSS_TERMS:
        return f"validation loss, {metric.removeprefix('val_').replace('_', ' ')} term"
    return metric


def _baseline_line(ax, baselines: pd.DataFrame, dataset: str) -> None:
    """``dataset``'s strongest no-learning baseline (``analysis.baselines.strongest``) on an ACC axis: a
    dashed line at its mean ACC labelled with its description, its 95% interval over seeds shaded.
    Nothing without baselines. Drawn last: the y axis is fixed here."""
    found = strongest(baselines, dataset)
    if found is None:
        return
    name, acc = found
    mean, low, high = stats.mean_interval(acc)
    ax.axhline(mean, color="black", linestyle="--", linewidth=1.0, label=BASELINES.get(name, name))
    if not (math.isnan(low) or math.isnan(high)):
        # The interval of a few seeds can be wide: the axis stays on the runs and the mean, the band clipped.
        limits = ax.get_ylim()
        ax.axhspan(low, high, color="black", alpha=0.1, linewidth=0)
        ax.set_ylim(limits)


def _accuracy_by_k(runs: pd.DataFrame, stage: str) -> dict[int, pd.Series]:
    """ACC of the reported clustering of ``runs`` per K (``config/num_components``), in increasing K;
    a K without any ACC is left out."""
    acc = fixed_scores(runs, stage, "acc")
    by_k = {int(count): values.dropna() for count, values in acc.groupby(runs["config/num_components"], sort=True)}
    return {count: values for count, values in by_k.items() if not values.empty}


def components_figure(trials: pd.DataFrame, stage: str, baselines: pd.DataFrame) -> Figure | None:
    """ACC of the reported clustering against K for the runs of the component-count table
    (``ablation_tables.component_runs``: the ``k<K>`` presets, and ``mixem`` at a K none of them has), every
    dataset with at least two K: one point per seed at its own K, the mean as a line, the strongest
    no-learning baseline for reference. K doubles in the ablation (10, 20, 40), so the axis is log2."""
    done = finished(trials)
    groups = {dataset: _accuracy_by_k(component_runs(done, dataset), stage) for dataset in
              sorted(done["dataset"].unique())}
    groups = {dataset: by_k for dataset, by_k in groups.items() if len(by_k) > 1}
    if not groups:
        return None
    figure, axes = _figure(1, len(groups), width=4.0, height=3.2)
    for ax, (dataset, by_k) in zip(axes[0], groups.items(), strict=True):
        for index, (count, acc) in enumerate(by_k.items()):
            # Offsets in log2 units: each seed's point stays beside its own K on the log axis.
            ax.scatter(count * 2.0 ** _offsets(len(acc)), acc, s=14, color="grey", zorder=3,
                       label="one seed" if index == 0 else None)
        ax.plot(list(by_k), [acc.mean() for acc in by_k.values()], marker="o", color="tab:blue",
                label="mean over seeds")
        _baseline_line(ax, baselines, dataset)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(by_k), [str(count) for count in by_k])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(COMPONENTS_LABEL)
        ax.set_ylabel(ACC_LABEL)
        ax.set_title(dataset)
        ax.legend(fontsize="small")
    return figure


def learning_curves_figure(trials: pd.DataFrame, epochs: pd.DataFrame) -> Figure | None:
    """Per trial, the contrastive loss (NT-Xent, the one term every preset has with the same weight, so
    curves compare; the total's terms differ in weight and sign) and the ACC of its reported clustering
    at each evaluated epoch against the epoch; ablation presets in colour, search trials in grey."""
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
            loss_ax.plot(curve["epoch"], curve["loss_contrastive"], label=label, **style)
            evaluated = curve[curve["acc"].notna()]
            acc_ax.plot(evaluated["epoch"], evaluated["acc"], marker=".", **style)
        loss_ax.set_ylabel(LOSS_LABEL)
        acc_ax.set_ylabel(REPORTED_ACC_LABEL)
        for ax in (loss_ax, acc_ax):
            ax.set_title(dataset)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        loss_ax.legend(fontsize="small")
    return figure


def _ablation_label(preset: str) -> str:
    """An ablation row as a tick names it: what the loss row adds, or its K."""
    if preset in LOSS_ROWS:
        return LOSS_ROWS[preset]
    return f"K = {ABLATIONS[preset]['num_components']}" if preset in ABLATIONS else preset


def spread_figure(trials: pd.DataFrame, stage: str, baselines: pd.DataFrame) -> Figure | None:
    """ACC of every seed for each ablation row (loss, then component presets), with the mean: the
    reported clustering, ``kmeans_z_l2`` for the SimCLR head; the strongest baseline for reference."""
    runs = finished(trials)
    runs = runs[runs["preset"].isin(ABLATION_ROWS)]
    datasets = sorted(runs["dataset"].unique())
    if not datasets:
        return None
    figure, axes = _figure(1, len(datasets), width=5.0, height=3.6)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        group = runs[runs["dataset"] == dataset]
        presets = [preset for preset in ABLATION_ROWS if preset in set(group["preset"])]
        for x, preset in enumerate(presets):
            acc = fixed_scores(group[group["preset"] == preset], stage, "acc").dropna()
            if acc.empty:
                continue
            ax.scatter(x + _offsets(len(acc)), acc, s=16, color="tab:blue", label="one seed" if x == 0 else None)
            ax.hlines(acc.mean(), x - 0.25, x + 0.25, color="black", label="mean over seeds" if x == 0 else None)
        _baseline_line(ax, baselines, dataset)
        ax.set_xticks(range(len(presets)), [_shorten(_ablation_label(preset)) for preset in presets],
                      rotation=45, ha="right")
        ax.set_ylabel(REPORTED_ACC_LABEL)
        ax.set_title(f"{dataset}: spread over seeds")
        ax.legend(fontsize="small")
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
    figure, axes = _figure(1, len(datasets), width=5.0, height=3.6)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        group = runs[runs["dataset"] == dataset]
        for x, (rep, norm) in enumerate(pairs):
            for shift, method, colour in ((-0.2, "kmeans", "tab:orange"), (0.2, "compinit", "tab:blue")):
                acc = group[f"{stage}/{method}_{rep}_{norm}_acc"].dropna()
                label = {"kmeans": "k-means++", "compinit": "component-mean init"}[method] if x == 0 else None
                ax.scatter(x + shift + _offsets(len(acc), 0.15), acc, s=14, color=colour, label=label)
        ax.set_xticks(range(len(pairs)), [f"{REPRESENTATION_NAMES[rep]}\n{NORM_NAMES[norm]}" for rep, norm in pairs],
                      fontsize="small")
        ax.set_xlabel("representation K-means clusters")
        ax.set_ylabel(ACC_LABEL)
        ax.set_title(f"{dataset}: {preset}, one point per seed")
        ax.legend(fontsize="small")
    return figure


def _search_positions(ax, values: pd.Series) -> pd.Series:
    """Where each trial's ``values`` (one config field) sits on ``ax``'s x axis, the axis scaled to fit:
    a choice at evenly spaced, labelled positions; a number as itself, on a logarithmic axis where it
    spans decades (symmetric-log when it may be 0, a term switched off)."""
    if not is_number(values):
        choices = sorted(values.unique(), key=value_text)
        ax.set_xticks(range(len(choices)), [value_text(choice) for choice in choices])
        return values.map({choice: index for index, choice in enumerate(choices)})
    x = values.astype(float)
    positive = x[x > 0]
    if not positive.empty and positive.max() > 10 * positive.min():
        if (x <= 0).any():
            ax.set_xscale("symlog", linthresh=float(positive.min()))
        else:
            ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # labels at every minor tick overlap
    return x


def search_figure(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str, baselines: pd.DataFrame) -> Figure | None:
    """One search's ``metric`` against each searched value, every trial that reached the common
    point (``rungs.common_epoch``) a dot coloured by how it ended; for an ACC, the dataset's strongest
    no-learning baseline for reference."""
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
        x = _search_positions(ax, reached[f"config/{name}"])
        for status, colour in STATUS_COLOURS.items():
            ended = reached["status"] == status
            if ended.any():
                ax.scatter(x[ended], reached.loc[ended, f"{rungs.AT}/{metric}"], s=18, color=colour, label=status)
        if metric.endswith("_acc"):
            for dataset in sorted(runs["dataset"].unique()):  # one, for one search
                _baseline_line(ax, baselines, dataset)
        ax.set_xlabel(parameter_label(name))
    for row in axes:
        row[0].set_ylabel(textwrap.fill(metric_label(metric), 30))  # one axes high: two lines fit, one does not
    axes[0, -1].legend(fontsize="small")
    figure.suptitle(f"{len(reached)} trials at epoch {epoch}, the last epoch all reached")
    return figure


def _difference_rows(ax, rows: pd.DataFrame) -> None:
    """One comparison per row of ``rows`` on ``ax``, the first on top: a point at the mean paired
    difference, a bar over its 95% interval where there is one, styled by the verdict."""
    positions = np.arange(len(rows))[::-1]
    for position, (_, row) in zip(positions, rows.iterrows(), strict=True):
        colour, marker = VERDICT_STYLES.get(row["verdict"], VERDICT_STYLES[stats.INCONCLUSIVE])
        interval = not (math.isnan(row["low"]) or math.isnan(row["high"]))
        xerr = [[row["diff"] - row["low"]], [row["high"] - row["diff"]]] if interval else None
        ax.errorbar([row["diff"]], [position], xerr=xerr, fmt=marker, color=colour, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    labels = [f"{_shorten(str(row['A']), 28)} vs {_shorten(str(row['B']), 28)}" for _, row in rows.iterrows()]
    ax.set_yticks(positions, labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)


def differences_figure(table: pd.DataFrame) -> Figure | None:
    """The rows of a comparison table (``analysis.ablation_tables.comparisons``) at a glance: each A - B as a point
    with its 95% interval (paired by seed) against a line at 0, coloured by its verdict; one axes per
    dataset, on one shared x axis. None when no row has a difference."""
    shown = table[table["diff"].notna()]
    if shown.empty:
        return None
    datasets = sorted(shown["dataset"].unique())
    counts = [int((shown["dataset"] == dataset).sum()) for dataset in datasets]
    figure = Figure(figsize=(9.0, 1.2 + 0.35 * sum(counts) + 0.5 * len(datasets)), layout="constrained")
    axes = figure.subplots(len(datasets), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": counts})[:, 0]
    for ax, dataset in zip(axes, datasets, strict=True):
        _difference_rows(ax, shown[shown["dataset"] == dataset])
        ax.set_title(dataset)
    axes[-1].set_xlabel(DIFFERENCE_LABEL)
    handles = [Line2D([], [], color=colour, marker=marker, linestyle="", label=verdict)
               for verdict, (colour, marker) in VERDICT_STYLES.items() if verdict in set(shown["verdict"])]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small",
                  title="verdict of A beats B")
    return figure
