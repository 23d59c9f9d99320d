"""The report's tables, one function each, from the trials frame of ``analysis.runs.load_runs``.

Conventions shared by every table (docs/analysis.md explains them):

- A row averages the *finished* trials it holds (its seeds); early-stopped and errored trials
  only count in ``cost_table``. A cell reads ``mean ± std (n=N)``, std over seeds with ddof=1;
  one seed reads ``0.812 (n=1)``; no value at all reads "—".
- Metrics are read at ``stage="final"``, the last evaluation of each trial. ``stage="best"``
  reads them at the epoch where ``acc_max`` peaked, an epoch picked with the labels, so optimistic.
- Where a row reports one clustering (main, loss, component and sensitivity tables), it is the
  K-means variant (k-means++ or component-mean init, any representation, raw or L2) with the
  highest mean ACC over that row's trials, and the table names it; NMI and ARI are that
  variant's. Choosing with the labels flatters every row alike; the K-means table shows them all.
"""

from __future__ import annotations

import math
from itertools import pairwise

import optuna
import pandas as pd
from scipy.stats import spearmanr

from mixem.config import LOSS_WEIGHTS
from mixem.presets import ABLATIONS, COMPONENT_ABLATION, LOSS_ABLATION
from mixem.scores import NORMS, REPRESENTATIONS, VARIANTS

STAGES = ("final", "best")
KMEANS_VARIANTS = [variant for variant in VARIANTS if variant.startswith(("kmeans_", "compinit_"))]
EMPTY = "—"
NO_RUN = "no finished run"
METRIC_COLUMNS = {"ACC": "acc", "NMI": "nmi", "ARI": "ari"}
CLUSTERING_COLUMNS = ["K-means variant", *METRIC_COLUMNS]

# What each row of the loss ablation adds to the one above it (mixem.presets holds the overrides).
LOSS_ROWS = {
    "simclr": "contrastive only (SimCLR head)",
    "mixture_only": "+ mixture head",
    "entropy": "+ (i) marginal entropy",
    "entropy_instance": "+ (ii) instance term (1 - max pi)",
    "mixem": "+ (iii) associative: full MIX'EM",
    "mixem_entropy": "full, (ii) as the paper's entropy",
}
MAIN_METHODS = {"mixem": "MIX'EM", "simclr": "SimCLR"}
# The paper's ACC (abstract). Its SimCLR baseline clusters L2-normalised representations; it does
# not say which representation gave MIX'EM's numbers, so those stand beside both norms.
PUBLISHED_ACC = {
    ("mixem", "stl10"): 0.78,
    ("mixem", "cifar10"): 0.82,
    ("mixem", "cifar100-20"): 0.44,
    ("simclr", "stl10"): 0.70,
}
PUBLISHED_NORM = {"simclr": "l2"}
CLUSTERINGS = {"kmeans": "k-means++", "compinit": "component-mean init", "argmax": "argmax pi"}
# Optuna's importance evaluators, seeded so that a report is reproducible.
IMPORTANCE_EVALUATORS = {
    "fANOVA": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
    "MDI": lambda: optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0),
}
# Config fields that are not hyperparameters of a search.
NOT_SEARCHED = ("dataset", "seed")


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


def best_variant(trials: pd.DataFrame, stage: str = "final", candidates=KMEANS_VARIANTS) -> str | None:
    """The candidate variant with the highest mean ACC over ``trials`` (the first in ``VARIANTS``
    order on a tie), or None when none has a value."""
    means = {variant: trials[f"{stage}/{variant}_acc"].mean() for variant in candidates}
    means = {variant: mean for variant, mean in means.items() if not math.isnan(mean)}
    return max(means, key=means.get) if means else None


def metric_cells(trials: pd.DataFrame, variant: str | None, stage: str = "final") -> dict[str, str]:
    """``{"ACC", "NMI", "ARI"}`` cells of one clustering variant over ``trials``."""
    if variant is None:
        return dict.fromkeys(METRIC_COLUMNS, EMPTY)
    return {column: cell(trials[f"{stage}/{variant}_{metric}"]) for column, metric in METRIC_COLUMNS.items()}


def clustering_cells(trials: pd.DataFrame, stage: str = "final", candidates=KMEANS_VARIANTS) -> dict[str, str]:
    """The best candidate variant's name and its cells (see the module docstring)."""
    variant = best_variant(trials, stage, candidates)
    return {"K-means variant": variant or NO_RUN, **metric_cells(trials, variant, stage)}


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")


def _datasets_with(trials: pd.DataFrame, presets) -> list[str]:
    """The datasets (sorted) with at least one trial, of any status, of one of ``presets``."""
    return sorted(trials.loc[trials["preset"].isin(presets), "dataset"].unique())


def main_table(trials: pd.DataFrame, stage: str = "final") -> pd.DataFrame:
    """Per dataset, full MIX'EM and the SimCLR baseline (presets "mixem", "simclr"), K-means on raw
    and on L2-normalised representations, beside the paper's ACC where the dataset matches."""
    _check_stage(stage)
    done = finished(trials)
    rows = []
    for dataset in _datasets_with(trials, list(MAIN_METHODS)):
        for preset, method in MAIN_METHODS.items():
            runs = done[(done["dataset"] == dataset) & (done["preset"] == preset)]
            for norm in NORMS:
                candidates = [variant for variant in KMEANS_VARIANTS if variant.endswith(f"_{norm}")]
                published = PUBLISHED_ACC.get((preset, dataset))
                shown = published is not None and PUBLISHED_NORM.get(preset, norm) == norm
                rows.append({"dataset": dataset, "method": method, "norm": norm,
                             **clustering_cells(runs, stage, candidates),
                             "paper ACC": f"{published:.2f}" if shown else ""})
    return pd.DataFrame(rows, columns=["dataset", "method", "norm", *CLUSTERING_COLUMNS, "paper ACC"])


def loss_table(trials: pd.DataFrame, stage: str = "final") -> pd.DataFrame:
    """The loss ablation: one row per preset of ``LOSS_ABLATION``, in order, from contrastive only
    to full MIX'EM, then the code form of term (ii). For every dataset with any of these presets,
    a preset without a finished trial stays in its place, marked "no finished run"."""
    _check_stage(stage)
    done = finished(trials)
    rows = []
    for dataset in _datasets_with(trials, LOSS_ABLATION):
        for preset in LOSS_ABLATION:
            runs = done[(done["dataset"] == dataset) & (done["preset"] == preset)]
            rows.append({"dataset": dataset, "preset": preset, "terms": LOSS_ROWS[preset],
                         **clustering_cells(runs, stage)})
    return pd.DataFrame(rows, columns=["dataset", "preset", "terms", *CLUSTERING_COLUMNS])


def kmeans_table(trials: pd.DataFrame, stage: str = "final", presets=("mixem", "simclr")) -> pd.DataFrame:
    """The K-means ablation: every clustering of the representations h, z and dom (k-means++ vs
    component-mean init, raw vs L2), and argmax pi, for the runs of each of ``presets``. Variants a
    run does not have (the SimCLR head has no pi, hence no component init) are left out."""
    _check_stage(stage)
    done = finished(trials)
    order = [(rep, norm, method) for rep in REPRESENTATIONS for norm in NORMS for method in ("kmeans", "compinit")]
    rows = []
    for dataset in sorted(done["dataset"].unique()):
        for preset in presets:
            runs = done[(done["dataset"] == dataset) & (done["preset"] == preset)]
            for rep, norm, method in [*order, ("pi", EMPTY, "argmax")]:
                variant = "argmax_pi" if method == "argmax" else f"{method}_{rep}_{norm}"
                cells = metric_cells(runs, variant, stage)
                if cells["ACC"] != EMPTY:
                    rows.append({"dataset": dataset, "preset": preset, "representation": rep, "norm": norm,
                                 "clustering": CLUSTERINGS[method], **cells})
    return pd.DataFrame(rows, columns=["dataset", "preset", "representation", "norm", "clustering", *METRIC_COLUMNS])


def component_table(trials: pd.DataFrame, stage: str = "final") -> pd.DataFrame:
    """The component count: runs of the presets ``COMPONENT_ABLATION`` grouped by K
    (``config/num_components``); a preset without a finished trial keeps its row, marked."""
    _check_stage(stage)
    done = finished(trials)
    rows = []
    for dataset in _datasets_with(trials, COMPONENT_ABLATION):
        runs = done[(done["dataset"] == dataset) & done["preset"].isin(COMPONENT_ABLATION)]
        missing = [preset for preset in COMPONENT_ABLATION if preset not in set(runs["preset"])]
        counts = set(runs["config/num_components"]) | {ABLATIONS[preset]["num_components"] for preset in missing}
        for count in sorted(int(k) for k in counts):
            rows.append({"dataset": dataset, "K": count,
                         **clustering_cells(runs[runs["config/num_components"] == count], stage)})
    return pd.DataFrame(rows, columns=["dataset", "K", *CLUSTERING_COLUMNS])


def searched(trials: pd.DataFrame) -> pd.DataFrame:
    """The finished trials of hyperparameter searches (preset ""), which the sensitivity uses."""
    done = finished(trials)
    return done[done["preset"] == ""]


def varied_parameters(runs: pd.DataFrame) -> list[str]:
    """The loss weights, then every other config field that takes more than one value in ``runs``."""
    fields = [column.removeprefix("config/") for column in runs.columns if column.startswith("config/")]
    others = [name for name in fields if name not in (*LOSS_WEIGHTS, *NOT_SEARCHED)
              and runs[f"config/{name}"].nunique() > 1]
    return [*LOSS_WEIGHTS, *sorted(others)]


def sensitivity_table(trials: pd.DataFrame, stage: str = "final") -> pd.DataFrame:
    """ACC against each searched hyperparameter, over the finished trials of searches (preset ""):
    the range searched, Spearman's rank correlation with ACC, and the importance by Optuna's fANOVA
    and mean-decrease-impurity evaluators (seeded, normalised to sum to 1 over the parameters).
    ACC is one K-means variant for all trials of a dataset, the best by mean over them."""
    _check_stage(stage)
    runs_all = searched(trials)
    rows = []
    for dataset in sorted(runs_all["dataset"].unique()):
        runs = runs_all[runs_all["dataset"] == dataset]
        variant = best_variant(runs, stage)
        if variant is None:
            continue
        runs = runs[runs[f"{stage}/{variant}_acc"].notna()]
        acc = runs[f"{stage}/{variant}_acc"]
        parameters = varied_parameters(runs)
        importances = param_importances(runs, acc, parameters)
        for name in parameters:
            values = runs[f"config/{name}"]
            fixed = values.nunique() < 2
            ranked = not fixed and _is_number(values) and acc.nunique() > 1
            rho = spearmanr(values.astype(float), acc).statistic if ranked else math.nan
            rows.append({"dataset": dataset, "parameter": name, "values": _value_range(values), "trials": len(runs),
                         "ACC variant": variant, "Spearman rho": _number(rho),
                         **{evaluator: _number(math.nan if fixed else importance.get(name, math.nan))
                            for evaluator, importance in importances.items()}})
    return pd.DataFrame(rows, columns=["dataset", "parameter", "values", "trials", "ACC variant", "Spearman rho",
                                       *IMPORTANCE_EVALUATORS])


def param_importances(runs: pd.DataFrame, acc: pd.Series, parameters: list[str]) -> dict[str, dict[str, float]]:
    """``{evaluator: {parameter: importance}}`` from Optuna's evaluators, on a study rebuilt from
    ``runs`` (each a complete trial whose value is its ``acc``); empty for fewer than 2 trials."""
    if len(runs) < 2:
        return {evaluator: {} for evaluator in IMPORTANCE_EVALUATORS}
    distributions = {name: _distribution(runs[f"config/{name}"]) for name in parameters}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" per table
    try:
        study = optuna.create_study(direction="maximize")
        study.add_trials([
            optuna.trial.create_trial(params={name: _python(row[f"config/{name}"]) for name in parameters},
                                      distributions=distributions, value=float(value))
            for (_, row), value in zip(runs.iterrows(), acc, strict=True)
        ])
        return {evaluator: optuna.importance.get_param_importances(study, evaluator=make(), params=parameters)
                for evaluator, make in IMPORTANCE_EVALUATORS.items()}
    finally:
        optuna.logging.set_verbosity(verbosity)


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _value_range(values: pd.Series) -> str:
    """"0.5 to 8", "0.1 (fixed)", or the choices of a categorical field."""
    if values.nunique() < 2:
        value = _python(values.iloc[0])
        return f"{value:.3g} (fixed)" if _is_number(values) else f"{value} (fixed)"
    if _is_number(values):
        return f"{values.min():.3g} to {values.max():.3g}"
    return ", ".join(sorted(map(str, values.unique())))


def _distribution(values: pd.Series):
    """The smallest Optuna distribution holding every value of one config column."""
    if not _is_number(values):
        return optuna.distributions.CategoricalDistribution(sorted(map(_python, values.unique()), key=str))
    if pd.api.types.is_integer_dtype(values):
        return optuna.distributions.IntDistribution(int(values.min()), int(values.max()))
    return optuna.distributions.FloatDistribution(float(values.min()), float(values.max()))


def _python(value):
    """A NumPy scalar as the Python value Optuna expects."""
    return value.item() if hasattr(value, "item") else value


def _number(value: float) -> str:
    return EMPTY if math.isnan(value) else f"{value:.3f}"


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
    counts = runs["status"].value_counts()
    statuses = ", ".join(f"{counts[status]} {status}" for status in sorted(counts.index))
    return {"trials": statuses, "epochs": int(runs["epochs"].sum()),
            **{column: f"{runs[seconds].sum() / 3600:.3g}" for column, seconds in
               (("GPU-hours", "gpu_seconds"), ("CPU-hours", "cpu_seconds"), ("wall-hours", "wall_seconds"))}}


def claims_table(trials: pd.DataFrame, stage: str = "final") -> pd.DataFrame:
    """The paper's three claims, checked on these runs; each row compares A against B:

    1. K-means initialised with the mixture components beats k-means++, in mean and in spread
       over seeds (runs of "mixem", each representation and norm): "yes" needs a higher mean and
       a smaller std; "mean only" / "spread only" say which half holds.
    2. K-means on L2-normalised SimCLR representations beats raw ones (runs of "simclr").
    3. Each loss term adds accuracy (consecutive rows of the loss ablation, best variant each).
    """
    _check_stage(stage)
    done = finished(trials)
    rows = []

    def compare(dataset, claim, a_label, a_values, b_label, b_values, spread=False):
        a, b = a_values.dropna(), b_values.dropna()
        if a.empty or b.empty:
            verdict = EMPTY
        else:
            better_mean = a.mean() > b.mean()
            if spread and len(a) > 1 and len(b) > 1:
                steadier = a.std(ddof=1) < b.std(ddof=1)
                verdict = {(True, True): "yes", (True, False): "mean only", (False, True): "spread only",
                           (False, False): "no"}[better_mean, steadier]
            else:
                verdict = "yes" if better_mean else "no"
        rows.append({"dataset": dataset, "claim": claim, "A": a_label, "A ACC": cell(a), "B": b_label,
                     "B ACC": cell(b), "holds": verdict})

    for dataset in sorted(done["dataset"].unique()):
        runs = done[done["dataset"] == dataset]
        mixem = runs[runs["preset"] == "mixem"]
        if not mixem.empty:
            for rep in REPRESENTATIONS:
                for norm in NORMS:
                    a, b = f"compinit_{rep}_{norm}", f"kmeans_{rep}_{norm}"
                    compare(dataset, "1 component init", a, mixem[f"{stage}/{a}_acc"], b, mixem[f"{stage}/{b}_acc"],
                            spread=True)
        simclr = runs[runs["preset"] == "simclr"]
        if not simclr.empty:
            for rep in REPRESENTATIONS:
                a, b = f"kmeans_{rep}_l2", f"kmeans_{rep}_raw"
                if simclr[f"{stage}/{a}_acc"].notna().any():
                    compare(dataset, "2 L2 SimCLR", a, simclr[f"{stage}/{a}_acc"], b, simclr[f"{stage}/{b}_acc"])
        steps = LOSS_ABLATION[: LOSS_ABLATION.index("mixem") + 1]
        for before, after in pairwise(steps):
            a_runs, b_runs = runs[runs["preset"] == after], runs[runs["preset"] == before]
            if a_runs.empty or b_runs.empty:
                continue
            a_variant, b_variant = best_variant(a_runs, stage), best_variant(b_runs, stage)
            if a_variant is None or b_variant is None:
                continue
            compare(dataset, "3 loss term", f"{after} ({a_variant})", a_runs[f"{stage}/{a_variant}_acc"],
                    f"{before} ({b_variant})", b_runs[f"{stage}/{b_variant}_acc"])
    return pd.DataFrame(rows, columns=["dataset", "claim", "A", "A ACC", "B", "B ACC", "holds"])
