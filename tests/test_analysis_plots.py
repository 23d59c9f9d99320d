"""The figures of analysis.plots on hand-made runs: what each draws, read back from its axes."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D
from scipy.stats import t

from analysis import ablation_tables, plots
from analysis.baselines import COLUMNS as BASELINE_COLUMNS
from mixem.baselines import BASELINES
from mixem.config import Config
from mixem.presets import ABLATIONS
from mixem.scores import SCORE_KEYS

_ids = itertools.count()
NO_BASELINES = pd.DataFrame(columns=BASELINE_COLUMNS)


def trial(preset: str, seed: int, acc: float, dataset: str = "digits", status: str = "finished", **config) -> dict:
    """One row of load_runs: the preset's config, ``acc`` as the reported clustering's final ACC, NaN elsewhere."""
    flat = {**Config.for_dataset(dataset).to_flat(), **ABLATIONS.get(preset, {}), "seed": seed, **config}
    row = {"sweep": "s", "trial_id": f"t{next(_ids)}", "preset": preset, "dataset": dataset, "status": status,
           **{f"config/{name}": value for name, value in flat.items()},
           **{f"{stage}/{key}": math.nan for stage in ("final", "best") for key in SCORE_KEYS}}
    variant = "kmeans_z_l2" if flat["head"] == "simclr" else "compinit_z_l2"
    return row | {f"final/{variant}_acc": acc}


def baselines(dataset: str, accs: dict[str, list[float]]) -> pd.DataFrame:
    """load_baselines rows of ``dataset``: each baseline's ACC by seed 0, 1, ..."""
    rows = [{"dataset": dataset, "eval_split": "test", "baseline": name, "seed": seed, "n_init": 10,
             "max_iter": 30, "acc": acc, "nmi": 0.0, "ari": 0.0}
            for name, values in accs.items() for seed, acc in enumerate(values)]
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


def scatters(ax) -> list:
    return [collection for collection in ax.collections if type(collection).__name__ == "PathCollection"]


def dashed_lines(ax) -> list[Line2D]:
    return [line for line in ax.lines if line.get_linestyle() == "--"]


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """The 95% Student's t interval of the mean, written out here rather than taken from analysis.stats."""
    mean, sem = np.mean(values), np.std(values, ddof=1) / math.sqrt(len(values))
    half = t.ppf(0.975, len(values) - 1) * sem
    return mean, mean - half, mean + half


def component_trials() -> pd.DataFrame:
    """digits: mixem at its default K = 10 (no k10 run), k20 and k40; fashion-mnist: mixem alone, one K."""
    rows = [trial("mixem", seed, acc) for seed, acc in enumerate([0.50, 0.60, 0.70])]
    rows += [trial("k20", seed, acc) for seed, acc in enumerate([0.40, 0.44])]
    rows += [trial("k40", seed, acc) for seed, acc in enumerate([0.30, 0.36])]
    rows += [trial("k40", 2, 0.99, status="errored")]
    rows += [trial("mixem", seed, 0.8, dataset="fashion-mnist") for seed in range(2)]
    return pd.DataFrame(rows)


def test_components_figure_puts_every_seed_at_its_own_k_including_k10_from_mixem():
    figure = plots.components_figure(component_trials(), "final", NO_BASELINES)
    assert len(figure.axes) == 1  # fashion-mnist has one K: no line to draw
    ax = figure.axes[0]
    points = [collection.get_offsets() for collection in scatters(ax)]
    assert [len(seeds) for seeds in points] == [3, 2, 2]  # one point per seed; the errored run is no seed
    for count, seeds in zip([10, 20, 40], points, strict=True):
        assert np.all(np.abs(np.log2(seeds[:, 0] / count)) <= 0.15 + 1e-12)  # beside its own K, spread apart
        assert len(set(seeds[:, 0])) == len(seeds)
    assert list(points[0][:, 1]) == [0.50, 0.60, 0.70]
    mean = next(line for line in ax.lines if line.get_label() == "mean over seeds")
    assert list(mean.get_xdata()) == [10, 20, 40]
    assert np.allclose(mean.get_ydata(), [0.60, 0.42, 0.33])
    assert [label.get_text() for label in ax.get_xticklabels()] == ["10", "20", "40"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("number of mixture components K", "clustering accuracy (ACC)")
    again = plots.components_figure(component_trials(), "final", NO_BASELINES).axes[0]  # no randomness
    pairs = zip(scatters(ax), scatters(again), strict=True)
    assert all(np.array_equal(first.get_offsets(), second.get_offsets()) for first, second in pairs)


def test_components_figure_draws_the_strongest_baseline_with_its_interval():
    accs = {"pixels": [0.20, 0.22, 0.24], "pixels_l2": [0.30, 0.33, 0.34]}
    found = pd.concat([baselines("digits", accs), baselines("cifar10", {"pixels": [0.9, 0.9]})])
    ax = plots.components_figure(component_trials(), "final", found).axes[0]
    [line] = dashed_lines(ax)
    mean, low, high = t_interval(accs["pixels_l2"])
    assert np.allclose(line.get_ydata(), mean)
    assert line.get_label() == BASELINES["pixels_l2"]
    [band] = ax.patches
    assert np.allclose([band.get_bbox().y0, band.get_bbox().y1], [low, high])
    assert BASELINES["pixels_l2"] in [text.get_text() for text in ax.get_legend().get_texts()]
    plain = plots.components_figure(component_trials(), "final", NO_BASELINES).axes[0]
    assert not dashed_lines(plain) and not plain.patches


def test_a_baseline_of_one_seed_is_a_line_without_a_band():
    ax = plots.components_figure(component_trials(), "final", baselines("digits", {"pixels": [0.25]})).axes[0]
    assert np.allclose(dashed_lines(ax)[0].get_ydata(), 0.25)
    assert not ax.patches


def test_components_figure_is_none_without_two_k():
    assert plots.components_figure(pd.DataFrame([trial("mixem", 0, 0.5)]), "final", NO_BASELINES) is None


def test_learning_curves_plot_the_contrastive_loss_not_the_total():
    runs = pd.DataFrame([trial("mixem", 0, 0.6)])
    epochs = pd.DataFrame([{"sweep": "s", "trial_id": runs["trial_id"][0], "preset": "mixem", "epoch": epoch,
                            "loss_total": -5.0, "loss_contrastive": contrastive,
                            **{key: math.nan for key in SCORE_KEYS}, "compinit_z_l2_acc": acc}
                           for epoch, contrastive, acc in [(1, 3.0, math.nan), (2, 2.0, 0.4), (3, 1.5, 0.6)]])
    loss_ax, acc_ax = plots.learning_curves_figure(runs, epochs).axes
    [loss] = loss_ax.lines
    assert list(loss.get_ydata()) == [3.0, 2.0, 1.5]
    [acc] = acc_ax.lines
    assert (list(acc.get_xdata()), list(acc.get_ydata())) == ([2, 3], [0.4, 0.6])  # evaluated epochs only
    assert loss_ax.get_ylabel() == "contrastive loss (NT-Xent)"
    assert acc_ax.get_ylabel() == "ACC of the reported clustering"
    assert loss_ax.get_xlabel() == acc_ax.get_xlabel() == "epoch"


def test_spread_figure_names_rows_in_words_and_draws_the_baseline():
    runs = pd.DataFrame([trial(preset, seed, acc) for preset, accs in (("simclr", [0.5, 0.6]), ("k20", [0.4]))
                         for seed, acc in enumerate(accs)])
    ax = plots.spread_figure(runs, "final", baselines("digits", {"pixels": [0.2, 0.3]})).axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == [ablation_tables.LOSS_ROWS["simclr"], "K = 20"]
    assert [list(points.get_offsets()[:, 1]) for points in scatters(ax)] == [[0.5, 0.6], [0.4]]
    assert np.allclose(dashed_lines(ax)[0].get_ydata(), 0.25)
    assert ax.get_ylabel() == "ACC of the reported clustering"


def test_kmeans_spread_figure_names_axes_in_words():
    ax = plots.kmeans_spread_figure(pd.DataFrame([trial("mixem", 0, 0.6)]), "final").axes[0]
    assert ax.get_ylabel() == "clustering accuracy (ACC)"
    assert ax.get_xlabel() == "representation K-means clusters"
    assert "embedding z\nL2-normalised" in [label.get_text() for label in ax.get_xticklabels()]


def search(metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A search of four trials over w_entropy and lr, each evaluated at epoch 2 on ``metric``."""
    runs = pd.DataFrame([trial("", 0, math.nan, w_entropy=w, lr=lr)
                         for w, lr in [(0.0, 1e-4), (1.0, 1e-3), (2.0, 1e-2), (4.0, 1e-3)]])
    epochs = pd.DataFrame([{"sweep": "s", "trial_id": trial_id, "preset": "", "epoch": 2,
                            **{key: math.nan for key in SCORE_KEYS}, metric: 0.1 * index}
                           for index, trial_id in enumerate(runs["trial_id"])])
    return runs, epochs


def test_search_figure_names_axes_in_words_with_the_baseline_for_an_acc():
    found = baselines("digits", {"pixels": [0.2, 0.3]})
    figure = plots.search_figure(*search("compinit_z_l2_acc"), "compinit_z_l2_acc", found)
    shown = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in shown] == ["weight of term (i), marginal entropy", "learning rate"]
    assert shown[0].get_ylabel() == "clustering accuracy (ACC),\ncompinit_z_l2"
    assert all(np.allclose(dashed_lines(ax)[0].get_ydata(), 0.25) for ax in shown)
    assert shown[1].get_xscale() == "log"  # lr spans two decades
    loss = plots.search_figure(*search("val_loss"), "val_loss", found)
    assert not any(dashed_lines(ax) for ax in loss.axes)  # a loss is no ACC: no baseline
    assert loss.axes[0].get_ylabel() == "validation loss"


@pytest.mark.parametrize(("name", "label"), [
    ("w_push", "weight of push (iii)"),
    ("batch_size", "images per batch"),  # help text without its aside
    ("instance_form", "form of term (ii)"),  # a long help text up to its first clause
    ("not_a_field", "not_a_field"),
])
def test_parameter_label(name, label):
    assert plots.parameter_label(name) == label


def test_metric_label():
    assert plots.metric_label("argmax_pi_nmi") == "normalised mutual information (NMI), argmax_pi"
    assert plots.metric_label("val_pull") == "validation loss, pull term"
    assert plots.metric_label("pi_max_mean") == "pi_max_mean"


def comparison_table() -> pd.DataFrame:
    long = "best searched configuration (a sweep folder with a long name)"
    rows = [("digits", "MIX'EM", "SimCLR", "holds", 0.05, 0.02, 0.08, 5),
            ("digits", long, "K-means on raw pixels", "does not hold", -0.10, -0.15, -0.05, 5),
            ("digits", "MIX'EM", "K-means on raw pixels", "inconclusive", 0.01, math.nan, math.nan, 1),
            ("digits", "SimCLR", "nothing paired", "inconclusive", math.nan, math.nan, math.nan, 0),
            ("cifar10", "MIX'EM", "SimCLR", "inconclusive", 0.02, -0.01, 0.05, 3)]
    return ablation_tables.comparisons([{"dataset": dataset, "question": "?", "A": a, "B": b, "verdict": verdict,
                                "diff": diff, "low": low, "high": high, "n": n}
                               for dataset, a, b, verdict, diff, low, high, n in rows])


def test_differences_figure_draws_each_interval_against_zero_by_verdict():
    figure = plots.differences_figure(comparison_table())
    assert [ax.get_title() for ax in figure.axes] == ["cifar10", "digits"]
    digits = figure.axes[1]
    assert any(list(line.get_xdata()) == [0, 0] for line in digits.lines)  # the line at 0
    bars = digits.containers
    assert len(bars) == 3  # the row with nothing paired is left out
    holds, fails, single = bars
    assert np.allclose(holds.lines[2][0].get_segments()[0][:, 0], [0.02, 0.08])
    assert np.allclose(fails.lines[2][0].get_segments()[0][:, 0], [-0.15, -0.05])
    assert not single.has_xerr and list(single.lines[0].get_xdata()) == [0.01]
    assert [bar.lines[0].get_color() for bar in bars] == ["tab:green", "tab:red", "grey"]
    labels = dict(zip(digits.get_yticks(), [label.get_text() for label in digits.get_yticklabels()], strict=True))
    assert labels[2] == "MIX'EM vs SimCLR"  # the first row on top
    assert labels[1].endswith("… vs K-means on raw pixels") and len(labels[1]) < 60
    assert [bar.lines[0].get_ydata()[0] for bar in bars] == [2, 1, 0]
    assert [text.get_text() for text in figure.legends[0].get_texts()] == [
        "holds", "does not hold", "inconclusive"]
    assert digits.get_xlabel() == "difference in ACC, A - B (95% interval, paired by seed)"


def test_differences_figure_is_none_without_a_difference():
    assert plots.differences_figure(ablation_tables.comparisons([])) is None
    assert plots.differences_figure(comparison_table().iloc[[3]]) is None
