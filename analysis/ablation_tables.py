"""The ablation tables of a report, one function each: the main results beside the no-learning baselines, the
questions and the paper's claims as paired comparisons, the loss, K-means and component-count ablations, the
mixture's diagnostics and the cost. Rows are presets of ``mixem.presets``; each averages its finished trials
(seeds), and every cell reads as ``analysis.tables`` says.
"""

from __future__ import annotations

import math
from itertools import pairwise

import pandas as pd

from analysis import baselines as baselines_mod
from analysis import stats
from analysis.tables import (
    EMPTY,
    METRIC_COLUMNS,
    by_seed,
    cell,
    check_stage,
    finished,
    head_of,
    metric_cells,
    reported_by_seed,
    seed_noise,
    status_counts,
    value_range,
)
from mixem.presets import ABLATIONS, COMPONENT_ABLATION, LOSS_ABLATION
from mixem.scores import (
    FIXED_VARIANT,
    NORMS,
    ORACLE_METRIC,
    REPRESENTATIONS,
    SIMCLR_VARIANT,
    reported_variant,
)

# What each row of the loss ablation adds to the one above it (mixem.presets holds the overrides).
LOSS_ROWS = {
    "simclr": "contrastive only (SimCLR head)",
    "mixture_only": "+ mixture head",
    "entropy": "+ (i) marginal entropy",
    "entropy_instance": "+ (ii) instance term (1 - max pi)",
    "mixem": "+ (iii) associative: full MIX'EM",
    "mixem_entropy": "full, (ii) as the paper's entropy",
}


# The main table's rows: per method (preset), the clusterings shown for its head.
MAIN_METHODS = {"mixem": "MIX'EM", "simclr": "SimCLR", "given": "best searched configuration"}


MAIN_CLUSTERINGS = {
    "mixture": {FIXED_VARIANT: f"{FIXED_VARIANT} (fixed)", SIMCLR_VARIANT: f"{SIMCLR_VARIANT} (k-means++ init)"},
    "simclr": {SIMCLR_VARIANT: f"{SIMCLR_VARIANT} (fixed, no component init)",
               "kmeans_h_l2": "kmeans_h_l2 (the paper's SimCLR baseline)"},
}


# The paper's ACC (abstract), beside the clustering it reports: MIX'EM's own pipeline, and for its
# SimCLR baseline K-means on the L2-normalised representations.
PUBLISHED_ACC = {
    ("mixem", "stl10"): 0.78,
    ("mixem", "cifar10"): 0.82,
    ("mixem", "cifar100-20"): 0.44,
    ("simclr", "stl10"): 0.70,
}


PUBLISHED_VARIANT = {"mixem": FIXED_VARIANT, "simclr": "kmeans_h_l2"}


ORACLE_COLUMN = f"oracle ACC ({ORACLE_METRIC})"


CLUSTERINGS = {"kmeans": "k-means++", "compinit": "component-mean init", "argmax": "argmax pi"}


def variant_label(head: str) -> str:
    """The reported clustering, named as a table shows it."""
    return MAIN_CLUSTERINGS[head][reported_variant(head)] if head in MAIN_CLUSTERINGS else FIXED_VARIANT


def _datasets_with(trials: pd.DataFrame, presets) -> list[str]:
    """The datasets (sorted) with at least one trial, of any status, of one of ``presets``."""
    return sorted(trials.loc[trials["preset"].isin(presets), "dataset"].unique())


def method_groups(trials: pd.DataFrame, done: pd.DataFrame, dataset: str) -> list[tuple[str, str, pd.DataFrame]]:
    """(preset, label, finished runs) of each method of the main results on ``dataset``: MIX'EM and SimCLR,
    then the runs of preset "given" of each sweep folder, as "best searched configuration"."""
    of_dataset = trials[trials["dataset"] == dataset]
    groups = [(preset, method, done[(done["dataset"] == dataset) & (done["preset"] == preset)])
              for preset, method in MAIN_METHODS.items() if preset != "given"]
    given_sweeps = sorted(of_dataset.loc[of_dataset["preset"] == "given", "sweep"].unique())
    for sweep in given_sweeps:
        label = MAIN_METHODS["given"] + (f" ({sweep})" if len(given_sweeps) > 1 else "")
        runs = done[(done["dataset"] == dataset) & (done["preset"] == "given") & (done["sweep"] == sweep)]
        groups.append(("given", label, runs))
    return groups


def main_table(trials: pd.DataFrame, stage: str, baselines: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, full MIX'EM (preset "mixem") and the SimCLR baseline ("simclr"), each with its
    fixed clustering and one more (``MAIN_CLUSTERINGS``), beside the test-label oracle and the
    paper's ACC where the dataset matches; then the runs of preset "given" (a searched configuration
    confirmed over seeds), one group per sweep folder, as "best searched configuration"."""
    check_stage(stage)
    done = finished(trials)
    rows = []
    for dataset in _datasets_with(trials, list(MAIN_METHODS)):
        groups = method_groups(trials, done, dataset)
        for preset, method, runs in groups:
            for variant, clustering in MAIN_CLUSTERINGS[head_of(runs, preset)].items():
                published = PUBLISHED_ACC.get((preset, dataset))
                shown = published is not None and PUBLISHED_VARIANT[preset] == variant
                rows.append({"dataset": dataset, "method": method, "clustering": clustering,
                             **metric_cells(runs, variant, stage),
                             ORACLE_COLUMN: cell(runs[f"{stage}/{ORACLE_METRIC}"]) if not runs.empty else EMPTY,
                             "paper ACC": f"{published:.2f}" if shown else ""})
        rows += baseline_rows(baselines, dataset)
    return pd.DataFrame(rows, columns=["dataset", "method", "clustering", *METRIC_COLUMNS, ORACLE_COLUMN,
                                       "paper ACC"])


def baseline_rows(baselines: pd.DataFrame, dataset: str) -> list[dict]:
    """The main table's rows of ``dataset``'s no-learning baselines: each mean ± std over its seeds."""
    rows = []
    for name, runs in baselines[baselines["dataset"] == dataset].groupby("baseline", sort=True):
        rows.append({"dataset": dataset, "method": "no learning", "clustering": baselines_mod.BASELINES.get(name, name),
                     **{column: cell(runs[metric]) for column, metric in METRIC_COLUMNS.items()},
                     ORACLE_COLUMN: EMPTY, "paper ACC": ""})
    return rows


def loss_table(trials: pd.DataFrame, stage: str) -> pd.DataFrame:
    """The loss ablation: one row per preset of ``LOSS_ABLATION``, in order, from contrastive only
    to full MIX'EM, then the code form of term (ii); each row's reported clustering. For every
    dataset with any of these presets, a preset without a finished trial keeps its row, marked."""
    check_stage(stage)
    done = finished(trials)
    rows = []
    for dataset in _datasets_with(trials, LOSS_ABLATION):
        for preset in LOSS_ABLATION:
            runs = done[(done["dataset"] == dataset) & (done["preset"] == preset)]
            head = head_of(runs, preset)
            rows.append({"dataset": dataset, "preset": preset, "terms": LOSS_ROWS[preset],
                         "clustering": variant_label(head), **metric_cells(runs, reported_variant(head), stage)})
    return pd.DataFrame(rows, columns=["dataset", "preset", "terms", "clustering", *METRIC_COLUMNS])


def kmeans_table(trials: pd.DataFrame, stage: str, presets=("mixem", "simclr")) -> pd.DataFrame:
    """The K-means ablation: every clustering of the representations h, z and dom (k-means++ vs
    component-mean init, raw vs L2), and argmax pi, for the runs of each of ``presets``. Variants a
    run does not have (the SimCLR head has no pi, hence no component init) are left out."""
    check_stage(stage)
    done = finished(trials)
    rows = []
    for dataset in sorted(done["dataset"].unique()):
        for preset in presets:
            runs = done[(done["dataset"] == dataset) & (done["preset"] == preset)]
            if runs.empty:
                continue
            for rep in REPRESENTATIONS:
                norms = [("raw = l2", "raw")] if _norms_alike(runs, rep, stage) else [(norm, norm) for norm in NORMS]
                for shown, norm in norms:
                    for method in ("kmeans", "compinit"):
                        cells = metric_cells(runs, f"{method}_{rep}_{norm}", stage)
                        if cells["ACC"] != EMPTY:
                            rows.append({"dataset": dataset, "preset": preset, "representation": rep, "norm": shown,
                                         "clustering": CLUSTERINGS[method], **cells})
            cells = metric_cells(runs, "argmax_pi", stage)
            if cells["ACC"] != EMPTY:
                rows.append({"dataset": dataset, "preset": preset, "representation": "pi", "norm": EMPTY,
                             "clustering": CLUSTERINGS["argmax"], **cells})
    return pd.DataFrame(rows, columns=["dataset", "preset", "representation", "norm", "clustering", *METRIC_COLUMNS])


def _norms_alike(runs: pd.DataFrame, rep: str, stage: str) -> bool:
    """Whether every clustering of ``rep`` scores the same raw and L2-normalised in every run (dom is
    normalised already): the K-means table and the claims then show one row for both."""
    return all(runs[f"{stage}/{method}_{rep}_raw_{metric}"].equals(runs[f"{stage}/{method}_{rep}_l2_{metric}"])
               for method in ("kmeans", "compinit") for metric in METRIC_COLUMNS.values())


def component_runs(done: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The finished runs behind each K of the component count on ``dataset``: those of the preset
    ``k<K>`` (``COMPONENT_ABLATION``), or, for a K that none of them has, the runs of ``mixem`` at that
    K: with the dataset's default K, ``mixem`` is the same configuration as its ``k<K>`` preset (``k10``
    on ten classes), so a sweep need not train it twice, and a sweep that did counts each run once."""
    runs = done[done["dataset"] == dataset]
    presets = runs[runs["preset"].isin(COMPONENT_ABLATION)]
    mixem = runs[(runs["preset"] == "mixem") & ~runs["config/num_components"].isin(presets["config/num_components"])]
    return pd.concat([presets, mixem])


def component_table(trials: pd.DataFrame, stage: str) -> pd.DataFrame:
    """The component count: the runs of ``component_runs`` grouped by K (``config/num_components``),
    the fixed clustering. A K of ``COMPONENT_ABLATION`` without a finished run keeps its row."""
    check_stage(stage)
    done = finished(trials)
    rows = []
    for dataset in _datasets_with(trials, COMPONENT_ABLATION):
        runs = component_runs(done, dataset)
        counts = set(runs["config/num_components"]) | {ABLATIONS[preset]["num_components"]
                                                      for preset in COMPONENT_ABLATION}
        for count in sorted(int(k) for k in counts):
            rows.append({"dataset": dataset, "K": count, "clustering": variant_label("mixture"),
                         **metric_cells(runs[runs["config/num_components"] == count], FIXED_VARIANT, stage)})
    return pd.DataFrame(rows, columns=["dataset", "K", "clustering", *METRIC_COLUMNS])


def cost_table(trials: pd.DataFrame) -> pd.DataFrame:
    """The compute behind every row: per dataset and run (preset, or "search" for preset ""),
    trials of every status, epochs trained, and GPU-, CPU- and wall-clock hours; then the total."""
    order = {preset: index for index, preset in enumerate([*LOSS_ABLATION, *COMPONENT_ABLATION])}

    def position(preset: str) -> tuple:  # the ablations in their order, other presets by name, searches last
        return preset == "", order.get(preset, len(order)), preset

    rows = []
    for dataset in sorted(trials["dataset"].unique()):
        runs = trials[trials["dataset"] == dataset]
        presets = sorted(runs["preset"].unique(), key=position)
        for preset in presets:
            rows.append({"dataset": dataset, "run": preset or "search", **_cost(runs[runs["preset"] == preset])})
        if len(presets) > 1:
            rows.append({"dataset": dataset, "run": "total", **_cost(runs)})
    return pd.DataFrame(rows, columns=["dataset", "run", "trials", "epochs", "GPU-hours", "CPU-hours", "wall-hours"])


def _cost(runs: pd.DataFrame) -> dict:
    return {"trials": status_counts(runs), "epochs": int(runs["epochs"].sum()),
            **{column: f"{runs[seconds].sum() / 3600:.3g}" for column, seconds in
               (("GPU-hours", "gpu_seconds"), ("CPU-hours", "cpu_seconds"), ("wall-hours", "wall_seconds"))}}


def comparison_row(dataset: str, question: str, a_label: str, a: pd.Series, b_label: str, b: pd.Series,
                   noise: tuple[float, float] = (math.nan, math.nan)) -> dict:
    """One row of a comparison table: A against B paired by seed (``analysis.stats.compare``), its cells as
    text (``COMPARISON_COLUMNS``) and its numbers (``diff``, ``low``, ``high``, ``n``) for the figures."""
    result = stats.compare(a, b)
    pairs = stats.paired(a, b)
    return {"dataset": dataset, "question": question, "A": a_label, "A ACC": stats.interval_text(pairs["a"]),
            "B": b_label, "B ACC": stats.interval_text(pairs["b"]), "A - B": stats.difference_text(result),
            "K-means noise (A, B)": _noise_text(noise), "verdict": result["verdict"],
            **{key: result[key] for key in ("diff", "low", "high", "n")}}


COMPARISON_COLUMNS = ["dataset", "question", "A", "A ACC", "B", "B ACC", "A - B", "K-means noise (A, B)", "verdict"]


def _noise_text(noise: tuple[float, float]) -> str:
    return "" if all(math.isnan(value) for value in noise) else " / ".join(
        EMPTY if math.isnan(value) else f"{value:.3f}" for value in noise)


def comparisons(rows: list[dict]) -> pd.DataFrame:
    """The rows of ``comparison_row`` as a frame: the text columns, then the numbers."""
    return pd.DataFrame(rows, columns=[*COMPARISON_COLUMNS, "diff", "low", "high", "n"])


def questions_table(trials: pd.DataFrame, baselines: pd.DataFrame, stage: str) -> pd.DataFrame:
    """The questions every run should answer, per dataset, each paired by seed: does training help (each
    method against the strongest no-learning baseline, the K-means on pixels with the highest mean ACC),
    and does MIX'EM beat SimCLR (and a searched configuration, preset ``given``, beat both)?"""
    check_stage(stage)
    done = finished(trials)
    rows = []
    for dataset in _datasets_with(trials, list(MAIN_METHODS)):
        methods = [(preset, label, runs) for preset, label, runs in method_groups(trials, done, dataset)
                   if not runs.empty]
        strongest = baselines_mod.strongest(baselines, dataset)
        for _, label, runs in methods:
            if strongest is not None:
                name, acc = strongest
                rows.append(comparison_row(dataset, "does training help?", label, reported_by_seed(runs, stage),
                                           baselines_mod.BASELINES.get(name, name), acc,
                                           (seed_noise(runs, stage), math.nan)))
        # MIX'EM against SimCLR; each searched configuration against both, and a searched MIX'EM against a
        # searched SimCLR (searches of both heads at the same budget).
        for a_preset, a_label, a in methods:
            for b_preset, b_label, b in methods:
                searched_heads = (a_preset == b_preset == "given" and head_of(a, "given") == "mixture"
                                  and head_of(b, "given") == "simclr")
                if searched_heads or (a_preset, b_preset) in (("mixem", "simclr"), ("given", "simclr"),
                                                              ("given", "mixem")):
                    rows.append(comparison_row(dataset, f"does {a_label} beat {b_label}?", a_label,
                                               reported_by_seed(a, stage), b_label, reported_by_seed(b, stage),
                                               (seed_noise(a, stage), seed_noise(b, stage))))
    return comparisons(rows)


def diagnostics_table(trials: pd.DataFrame, stage: str) -> pd.DataFrame:
    """How class-like the mixture's components are, per dataset and preset of the mixture head (and each
    search): the mean of max pi and the components argmax pi uses (label-free), the purity of its groups
    and argmax pi's ACC (with the labels); mean ± std over the finished runs."""
    check_stage(stage)
    done = finished(trials)
    done = done[done["config/head"] != "simclr"]
    rows = []
    for (dataset, preset), runs in done.groupby(["dataset", "preset"], sort=True):
        rows.append({"dataset": dataset, "run": preset or "search", "K": value_range(runs["config/num_components"]),
                     **{label: cell(runs[f"{stage}/{key}"]) for label, key in DIAGNOSTIC_COLUMNS.items()}})
    return pd.DataFrame(rows, columns=["dataset", "run", "K", *DIAGNOSTIC_COLUMNS])


DIAGNOSTIC_COLUMNS = {"mean max pi": "pi_max_mean", "components used": "components_used",
                      "purity": "component_purity", "argmax-pi ACC": "argmax_pi_acc"}


def claims_table(trials: pd.DataFrame, baselines: pd.DataFrame, stage: str) -> pd.DataFrame:
    """The paper's claims as hypotheses, each A against B paired by seed (``comparison_row``):

    0. Semantic categories emerge through pi: argmax pi of full MIX'EM (and of each searched configuration
       of the mixture head) beats argmax pi of the mixture head without the extra terms (``mixture_only``),
       and the strongest no-learning baseline.
    1. K-means initialised with the mixture components beats k-means++ (runs of ``mixem`` and of each
       searched configuration, each representation and norm; two representations that cluster alike, as dom
       raw and dom l2, share a row).
    2. K-means on L2-normalised SimCLR representations beats raw ones (runs of ``simclr``).
    3. Each loss term adds accuracy: consecutive rows of the loss ablation, each its reported clustering.
    """
    check_stage(stage)
    done = finished(trials)
    rows = []
    for dataset in sorted(done["dataset"].unique()):
        runs = done[done["dataset"] == dataset]
        for group, members in _mixture_groups(trials, done, dataset):
            rows += _claim_zero(group, members, runs, baselines, dataset, stage)
            for label, (a, b) in collapse_pairs(members, stage).items():
                rows.append(comparison_row(dataset, "1 component init", f"{group}: compinit {label}",
                                           by_seed(members[a], members), f"kmeans {label}",
                                           by_seed(members[b], members)))
        simclr = runs[runs["preset"] == "simclr"]
        for rep in REPRESENTATIONS:
            a, b = f"{stage}/kmeans_{rep}_l2_acc", f"{stage}/kmeans_{rep}_raw_acc"
            if not simclr.empty and simclr[a].notna().any():
                rows.append(comparison_row(dataset, "2 L2 SimCLR", f"kmeans_{rep}_l2", by_seed(simclr[a], simclr),
                                           f"kmeans_{rep}_raw", by_seed(simclr[b], simclr)))
        steps = LOSS_ABLATION[: LOSS_ABLATION.index("mixem") + 1]
        for before, after in pairwise(steps):
            a_runs, b_runs = runs[runs["preset"] == after], runs[runs["preset"] == before]
            if a_runs.empty or b_runs.empty:
                continue
            rows.append(comparison_row(
                dataset, "3 loss term", f"{after} ({reported_variant(head_of(a_runs, after))})",
                reported_by_seed(a_runs, stage), f"{before} ({reported_variant(head_of(b_runs, before))})",
                reported_by_seed(b_runs, stage), (seed_noise(a_runs, stage), seed_noise(b_runs, stage))))
    return comparisons(rows)


def _mixture_groups(trials: pd.DataFrame, done: pd.DataFrame, dataset: str) -> list[tuple[str, pd.DataFrame]]:
    """(label, finished runs) of the configurations claims 0 and 1 are tested on: full MIX'EM (``mixem``) and
    each best searched configuration of the mixture head (``given``, per sweep folder)."""
    groups = []
    for preset, label, runs in method_groups(trials, done, dataset):
        if preset in ("mixem", "given") and not runs.empty and head_of(runs, preset) == "mixture":
            groups.append((preset if preset == "mixem" else label, runs))
    return groups


def _claim_zero(group: str, members: pd.DataFrame, runs: pd.DataFrame, baselines: pd.DataFrame, dataset: str,
                stage: str) -> list[dict]:
    """Claim 0 for one configuration: its argmax pi against ``mixture_only``'s and the strongest baseline."""
    plain = runs[runs["preset"] == "mixture_only"]
    argmax = f"{stage}/argmax_pi_acc"
    rows = []
    if not plain.empty:
        rows.append(comparison_row(dataset, "0 classes through pi", f"{group} argmax pi",
                                   by_seed(members[argmax], members), "mixture_only argmax pi",
                                   by_seed(plain[argmax], plain)))
    strongest = baselines_mod.strongest(baselines, dataset)
    if strongest is not None:
        name, acc = strongest
        rows.append(comparison_row(dataset, "0 classes through pi", f"{group} argmax pi",
                                   by_seed(members[argmax], members), baselines_mod.BASELINES.get(name, name), acc))
    return rows


def collapse_pairs(runs: pd.DataFrame, stage: str) -> dict[str, tuple[str, str]]:
    """``{label: (compinit column, kmeans column)}`` of each representation and norm of ``runs``, where a
    representation that clusters alike raw and L2-normalised (``_norms_alike``) has one label, "dom raw = l2"."""
    pairs: dict[str, tuple[str, str]] = {}
    for rep in REPRESENTATIONS:
        norms = [("raw = l2", "raw")] if _norms_alike(runs, rep, stage) else [(norm, norm) for norm in NORMS]
        for shown, norm in norms:
            if runs[f"{stage}/compinit_{rep}_{norm}_acc"].notna().any():  # else never evaluated: no row
                pairs[f"{rep} {shown}"] = (f"{stage}/compinit_{rep}_{norm}_acc", f"{stage}/kmeans_{rep}_{norm}_acc")
    return pairs

