"""The report's tables, one function each, from the frames of ``analysis.runs``.

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
- A search's tables (``top_trials``, ``sensitivity_table``, ``importance_table``) take the
  trials of one search (``search_runs``) and rank by the sweep's metric in its direction.
"""

from __future__ import annotations

import math
from itertools import pairwise

import optuna
import pandas as pd
from scipy.stats import spearmanr

from analysis import baselines as baselines_mod
from analysis import rungs, stats
from mixem.config import FIELDS, LOSS_WEIGHTS
from mixem.presets import ABLATIONS, COMPONENT_ABLATION, LOSS_ABLATION
from mixem.scores import (
    FIXED_VARIANT,
    NORMS,
    ORACLE_METRIC,
    REPRESENTATIONS,
    SIMCLR_VARIANT,
    metric_mode,
    reported_variant,
)

STAGES = ("final", "best")
EMPTY = "—"
NO_RUN = "no finished run"
METRIC_COLUMNS = {"ACC": "acc", "NMI": "nmi", "ARI": "ari"}

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
    "mixture": {FIXED_VARIANT: f"{FIXED_VARIANT} (fixed)", "kmeans_z_l2": "kmeans_z_l2 (k-means++ init)"},
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


def variant_label(head: str) -> str:
    """The reported clustering, named as a table shows it."""
    return MAIN_CLUSTERINGS[head][reported_variant(head)] if head in MAIN_CLUSTERINGS else FIXED_VARIANT


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


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")


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
    _check_stage(stage)
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
    _check_stage(stage)
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
    _check_stage(stage)
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
    _check_stage(stage)
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
    _check_stage(stage)
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
    _check_stage(stage)
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
    _check_stage(stage)
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


def baseline_verdicts(trials: pd.DataFrame, baselines: pd.DataFrame, metric: str, stage: str) -> list[str]:
    """The report's opening lines on whether training helped: each search's best finished trial against the
    strongest no-learning baseline, and a warning for each method whose paired difference with it does not
    hold (``questions_table``)."""
    lines = [best_search_verdict(search_trials(trials, sweep, dataset), baselines, dataset, metric)
             for sweep, dataset in searches(trials)]
    questions = questions_table(trials, baselines, stage)
    for _, row in questions[questions["question"] == "does training help?"].iterrows():
        if row["verdict"] != stats.HOLDS:
            lines.append(f"warning: on {row['dataset']}, {row['A']} ({row['A ACC']}) is not shown to beat "
                         f"{row['B']} ({row['B ACC']}): the paired difference {row['A - B']} is {row['verdict']}.")
    return [line for line in lines if line]


def best_search_verdict(runs: pd.DataFrame, baselines: pd.DataFrame, dataset: str, metric: str) -> str | None:
    """``analysis.baselines.verdict_line`` for a search's best finished trial by ``metric``: its reported
    clustering's final ACC against the strongest no-learning baseline; None without a finished trial."""
    done = finished(runs).dropna(subset=[f"final/{metric}"])
    if done.empty:
        return None
    best = done.loc[_ranked(done[f"final/{metric}"], metric).index[0]]
    variant = reported_variant(best["config/head"])
    return baselines_mod.verdict_line(best[f"final/{variant}_acc"], f"the best finished trial of search "
                                      f"`{best['sweep']}` by `{metric}` ({best['trial_id']}, {variant})",
                                      baselines, dataset)


# ---------------------------------------------------------------------------------------------
# Searches: the trials of preset "" of one sweep folder and dataset.


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


def _ranked(values: pd.Series, metric: str) -> pd.Series:
    """``values`` without NaN, best first by ``metric``'s direction; ties keep their order."""
    return values.dropna().sort_values(ascending=metric_mode(metric) == "min", kind="stable")


def top_trials(runs: pd.DataFrame, metric: str, stage: str, count: int) -> pd.DataFrame:
    """The ``count`` best trials of a search by ``metric`` (at ``stage``), of any status: the trial,
    every searched value, the metric (unless it is the fixed ACC itself), ACC, NMI and ARI of the
    reported clustering, and the epochs it ran and how it ended."""
    _check_stage(stage)
    parameters = searched_parameters(runs)
    best = runs.loc[_ranked(runs[f"{stage}/{metric}"], metric).index[:count]]
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
            optuna.trial.create_trial(params={name: _python(row[f"config/{name}"]) for name in parameters},
                                      distributions=distributions, value=float(value))
            for (_, row), value in zip(runs.iterrows(), values, strict=True)
        ])
        return {evaluator: optuna.importance.get_param_importances(study, evaluator=make(), params=parameters)
                for evaluator, make in IMPORTANCE_EVALUATORS.items()}
    finally:
        optuna.logging.set_verbosity(verbosity)


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
    value = _python(value)
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _distribution(values: pd.Series):
    """The smallest Optuna distribution holding every value of one config column."""
    if not is_number(values):
        return optuna.distributions.CategoricalDistribution(sorted(map(_python, values.unique()), key=str))
    if pd.api.types.is_integer_dtype(values):
        return optuna.distributions.IntDistribution(int(values.min()), int(values.max()))
    return optuna.distributions.FloatDistribution(float(values.min()), float(values.max()))


def _python(value):
    """A NumPy scalar as the Python value Optuna expects."""
    return value.item() if hasattr(value, "item") else value


def number(value: float) -> str:
    """A score or statistic with 3 decimals, "—" for NaN."""
    return EMPTY if value is None or math.isnan(value) else f"{value:.3f}"
