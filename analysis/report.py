"""Write the report of one or more sweep folders: Markdown and LaTeX tables, and the PNGs they link.

    python -m analysis.report sweeps/fashion-mnist                      # writes into that folder
    python -m analysis.report sweeps/ablation sweeps/search --out reports/digits
    python -m analysis.report sweeps/search --metric val_contrastive    # rank searches by another score
    python -m analysis.report sweeps/fashion-mnist --stage best          # metrics at the best epoch

Writes ``OUT/report.md``, ``OUT/report.tex`` and one PNG per figure; ``OUT`` is the first folder
unless ``--out`` names another. Each search is ranked by the --metric it was run with (its sweep.json),
or all by ``--metric`` when given. Only the sections whose runs exist are written; a line at the top names the runs
that would add the others. Every flag is checked and every table and figure computed before
anything is written, and each file is replaced whole, so bad input leaves earlier results as they
were. The report holds no timestamp or machine path: the same sweep output gives the same report.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis import ablation_tables, plots, rungs, search_tables, selection, stats, tables
from analysis.baselines import baseline_table, load_baselines
from analysis.best import best_trial, commands
from analysis.runs import load_epochs, load_runs, resolve_metric, search_metrics
from mixem.errors import MixemError
from mixem.files import write_atomic
from mixem.presets import ABLATIONS, COMPONENT_ABLATION, LOSS_ABLATION
from mixem.scores import FIXED_VARIANT, ORACLE_METRIC, metric_mode, reported_variant

MARKDOWN_FILE = "report.md"
LATEX_FILE = "report.tex"
# A search's figure is named after its sweep and dataset.
SEARCH_FIGURE = "search_{sweep}_{dataset}.png"
# The report's manifest: the files it wrote into its folder, the only ones a later report replaces or deletes.
MANIFEST_FILE = ".report-files"
TOP_TRIALS = 10
CONFIRM_SEEDS = 3


# A section is a title and its parts, in order: paragraphs, tables, commands and figures.
@dataclass
class Text:
    text: str


@dataclass
class Table:
    frame: pd.DataFrame


@dataclass
class Code:
    lines: list[str]


@dataclass
class Plot:
    name: str  # the PNG's file name
    figure: Figure


# The kinds of section, in the report's order, and their titles (a search's title names the search).
TITLES = {"baselines": "No-learning baselines", "main": "Main results",
          "questions": "Does training help, and does MIX'EM beat SimCLR?", "loss": "Loss ablation",
          "kmeans": "K-means ablation", "components": "Component count", "mixture": "Do the components become classes?",
          "claims": "The paper's claims", "search": "Searches", "cost": "Cost", "curves": "Learning curves"}


@dataclass
class Section:
    key: str  # its kind, a key of TITLES
    title: str
    parts: list = field(default_factory=list)
    level: int = 2  # 2: a section; 3: a part of the section above it


def build_sections(trials: pd.DataFrame, epochs: pd.DataFrame, baselines: pd.DataFrame, metric: str,
                   stage: str, ranked_by: dict[str, str] | None = None) -> list[Section]:
    """Every section of the report whose runs exist, in order: the baselines, the ablations and the
    questions they answer, each search, the cost and the learning curves. Each search is ranked by
    ``metric``, or by its own entry of ``ranked_by`` (sweep label -> score, ``runs.search_metrics``)."""
    sections = []

    def add(key: str, about: str, table: pd.DataFrame, *figures: tuple[str, Figure | None]) -> None:
        if not table.empty:
            plotted = [Plot(name, figure) for name, figure in figures if figure is not None]
            sections.append(Section(key, TITLES[key], [Text(about), Table(table), *plotted]))

    add("baselines", BASELINES_ABOUT, baseline_table(baselines))
    add("main", MAIN_ABOUT + (GIVEN_ABOUT if (trials["preset"] == "given").any() else ""),
        ablation_tables.main_table(trials, stage, baselines))
    questions = ablation_tables.questions_table(trials, baselines, stage)
    add("questions", QUESTIONS_ABOUT, questions[ablation_tables.COMPARISON_COLUMNS],
        ("questions.png", plots.differences_figure(questions)))
    loss = ablation_tables.loss_table(trials, stage)
    spread = ("spread.png", plots.spread_figure(trials, stage, baselines))
    add("loss", LOSS_ABOUT, loss, spread)
    add("kmeans", KMEANS_ABOUT, ablation_tables.kmeans_table(trials, stage),
        ("kmeans_spread.png", plots.kmeans_spread_figure(trials, stage)))
    add("components", COMPONENTS_ABOUT, ablation_tables.component_table(trials, stage),
        ("components.png", plots.components_figure(trials, stage, baselines)), *([spread] if loss.empty else []))
    add("mixture", MIXTURE_ABOUT, ablation_tables.diagnostics_table(trials, stage))
    claims = ablation_tables.claims_table(trials, baselines, stage)
    add("claims", CLAIMS_ABOUT, claims[ablation_tables.COMPARISON_COLUMNS],
        ("claims.png", plots.differences_figure(claims)))
    for sweep, dataset in search_tables.searches(trials):
        sections += search_sections(*search_tables.search_runs(trials, epochs, sweep, dataset), baselines, sweep,
                                    dataset, _ranked_by(sweep, metric, ranked_by), stage)
    add("cost", "Compute behind every row, trials of every status included.", ablation_tables.cost_table(trials))
    curves = plots.learning_curves_figure(trials, epochs)
    if curves is not None:
        sections.append(Section("curves", TITLES["curves"], [Text(CURVES_ABOUT), Plot("learning_curves.png", curves)]))
    return sections


BASELINES_ABOUT = (
    "What clustering the pixels gives without any learning, with the trials' own K-means settings (k-means++, the "
    "final evaluation's restarts, the same iterations) on the same evaluation images, over seeds: mean [95% "
    "interval] (n seeds). A trained model helps only where it beats these (`python -m mixem.baselines DATASET`).")
MAIN_ABOUT = (
    "Full MIX'EM (preset `mixem`) and the SimCLR baseline (preset `simclr`), each with its reported clustering and "
    f"one other, beside the test-label oracle `{ORACLE_METRIC}` (per trial the best ACC of all variants, picked "
    "with the labels: not a score of one method), the paper's ACC where the dataset matches (MIX'EM's beside its "
    "own pipeline, SimCLR's beside K-means on its L2-normalised representation h), and the no-learning baselines.")
GIVEN_ABOUT = (" Best searched configuration: the runs of preset `given`, a searched configuration confirmed over "
               "seeds.")
QUESTIONS_ABOUT = (
    "Does training help (each method against the strongest no-learning baseline), and does MIX'EM beat SimCLR? "
    "Each row pairs A and B by seed (same data split, initialisation and K-means seeds) and gives the mean "
    "difference with its 95% interval (Student's t over the pairs): the verdict is \"holds\" when the interval is "
    "above 0, \"does not hold\" when below, and \"inconclusive\" when it crosses 0 or has fewer than two pairs. "
    "K-means noise is the within-model noise of each side's reported clustering: the std of its ACC over K-means "
    "seeds on the same trained model, to read beside the difference.")
LOSS_ABOUT = (
    "One loss term added per row (presets of `mixem.presets.LOSS_ABLATION`), term (ii) in the authors' code form "
    "(1 - max pi); the last row is full MIX'EM with term (ii) as the paper's entropy. Each row is its reported "
    f"clustering; the SimCLR head has no mixture components, so its row is `{reported_variant('simclr')}`.")
KMEANS_ABOUT = (
    "Every clustering of every representation for the runs of `mixem` and `simclr`, none selected: k-means++ vs "
    "K-means initialised with the mixture components' means, raw vs L2-normalised, and argmax pi. Two rows that are "
    "the same number in every run (dom is L2-normalised already, so dom raw and dom l2 cluster alike) are one row.")
COMPONENTS_ABOUT = (
    f"Full MIX'EM with K mixture components (presets of `mixem.presets.COMPONENT_ABLATION`, and `mixem` at its K), "
    f"`{FIXED_VARIANT}`.")
MIXTURE_ABOUT = (
    "How far the mixture's components have become classes, at the last evaluation: the mean of max pi (1/K when pi "
    "is uniform, 1 when every image commits to one component) and the components argmax pi gives at least 1% of the "
    "images (both label-free), the purity of argmax pi's groups and argmax pi's ACC (with the labels); mean ± std "
    "over the finished runs of each preset (or search).")
CLAIMS_ABOUT = (
    "The paper's claims as hypotheses, each A against B paired by seed with its 95% interval and verdict, as in "
    "the questions above: (0) semantic categories emerge through pi: argmax pi of full MIX'EM beats argmax pi "
    "without the extra terms, and the no-learning baseline; (1) K-means initialised with the mixture components "
    "beats k-means++; (2) L2-normalised beats raw for SimCLR; (3) each loss term adds ACC, each row its reported "
    f"clustering (`{reported_variant('simclr')}` for the SimCLR head).")
CURVES_ABOUT = (
    f"The contrastive loss (NT-Xent, the one term every preset shares) and the ACC of the reported clustering "
    f"(`{reported_variant('mixem')}`; `{reported_variant('simclr')}` for the SimCLR head) at each evaluated epoch, for "
    "every trial.")


def baseline_verdicts(trials: pd.DataFrame, baselines: pd.DataFrame, metric: str, stage: str,
                      ranked_by: dict[str, str] | None = None) -> list[str]:
    """The report's opening lines on whether training helped: each search's best finished trial (by
    ``metric``, or its entry of ``ranked_by``) against the strongest no-learning baseline, and a warning for
    each method whose paired difference with it does not hold (``ablation_tables.questions_table``)."""
    lines = [search_tables.best_search_verdict(search_tables.search_trials(trials, sweep, dataset), baselines,
                                               dataset, _ranked_by(sweep, metric, ranked_by))
             for sweep, dataset in search_tables.searches(trials)]
    questions = ablation_tables.questions_table(trials, baselines, stage)
    for _, row in questions[questions["question"] == "does training help?"].iterrows():
        if row["verdict"] != stats.HOLDS:
            lines.append(f"warning: on {row['dataset']}, {row['A']} ({row['A ACC']}) is not shown to beat "
                         f"{row['B']} ({row['B ACC']}): the paired difference {row['A - B']} is {row['verdict']}.")
    return [line for line in lines if line]


def search_sections(runs: pd.DataFrame, epochs: pd.DataFrame, baselines: pd.DataFrame, sweep: str, dataset: str,
                    metric: str, stage: str) -> list[Section]:
    """The sections of one search: its top trials (with the best one against the no-learning baseline and
    the terms it never tried), the sensitivity at the common point and the rungs, the best configuration
    as commands, and the label-free model selection."""
    better = "higher" if metric_mode(metric) == "max" else "lower"
    about = [Text(
        f"{len(runs)} trials ({tables.status_counts(runs)}), ranked by {_named(metric)} ({better} is better). "
        "Early-stopped trials ran fewer epochs, so their last values are not comparable with the finished "
        "trials'; the sensitivity, the importance, the plot and the selection at the common point compare "
        "trials at an epoch they all reached (docs/analysis.md, \"The common point\").")]
    verdict = search_tables.best_search_verdict(runs, baselines, dataset, metric)
    if verdict:
        about.append(Text(verdict))
    never = search_tables.never_tried(runs)
    about.append(Text(f"Terms this search never switched on: {_and(never)} (their weight was 0 in every trial), so "
                      "it says nothing about them." if never else "Every loss term was on in at least one trial."))
    return [Section("search", f"Search `{sweep}` on {dataset}", about),
            Section("search", "Top trials", _top_trials(runs, metric, stage), level=3),
            Section("search", "Sensitivity", _sensitivity(runs, epochs, baselines, sweep, dataset, metric), level=3),
            Section("search", "Best configuration", _best_configuration(runs, dataset, metric), level=3),
            Section("search", "Label-free model selection", _selection(runs, epochs, metric), level=3)]


def _top_trials(runs: pd.DataFrame, metric: str, stage: str) -> list:
    top = search_tables.top_trials(runs, metric, stage, TOP_TRIALS)
    if top.empty:
        return [Text(f"No trial has a {stage} value of `{metric}`.")]
    return [Text(f"The {len(top)} best trials by {stage} `{metric}`, of any status (epochs says how long each ran), "
                 "with every searched value and ACC, NMI and ARI of the fixed clustering."), Table(top)]


def _sensitivity(runs: pd.DataFrame, epochs: pd.DataFrame, baselines: pd.DataFrame, sweep: str, dataset: str,
                 metric: str) -> list:
    if len(runs) < search_tables.MIN_SEARCH_TRIALS:
        return [Text(f"Left out: a rank correlation over {len(runs)} trials says nothing; it needs at least "
                     f"{search_tables.MIN_SEARCH_TRIALS}.")]
    sensitivity = search_tables.sensitivity_table(runs, epochs, metric)
    if sensitivity.empty:
        return [Text("No config field varies among these trials: nothing to compare.")]
    common = rungs.common_epoch(runs, epochs, metric)
    compared = rungs.compared_epochs(runs, epochs, metric)
    later = [epoch for epoch in compared if epoch != common]
    if compared:
        about = (f"Spearman's rho of each searched value with `{metric}` over the trials that had a value at each "
                 "epoch, early-stopped ones included (n per column); positive: higher values go with a higher metric. "
                 + (f"Epoch {common} is the common point, the last epoch every trial that ended normally reached"
                    if common in compared else "No epoch was reached by every trial")
                 + (f"; epoch {_and(later)}: where trials ended (ASHA's rungs, the last epoch), up to the last epoch "
                    f"with at least {rungs.MIN_TRIALS} trials." if later else "."))
    else:
        about = f"No epoch has a value of `{metric}` for {rungs.MIN_TRIALS} trials: no correlation."
    parts = [Text(about), Table(sensitivity)]
    reached = len(rungs.at_epoch(runs, epochs, metric, common)) if common is not None else 0
    importance = search_tables.importance_table(runs, epochs, metric)
    if importance.empty:
        parts.append(Text(
            f"Importance (Optuna's fANOVA and mean-decrease-impurity evaluators) is left out: it needs at least "
            f"{search_tables.MIN_IMPORTANCE_TRIALS} trials at the common point, and "
            + (f"epoch {common} has {reached}." if common is not None else "there is none.")))
    else:
        parts += [Text(f"Importance of each searched value for `{metric}` at epoch {common} ({reached} trials), by "
                       "Optuna's fANOVA and mean-decrease-impurity evaluators (seeded; each sums to 1 over the "
                       "parameters):"), Table(importance)]
    figure = plots.search_figure(runs, epochs, metric, baselines)
    if figure is not None:
        parts.append(Plot(SEARCH_FIGURE.format(sweep=_slug(sweep), dataset=_slug(dataset)), figure))
    return parts


def _best_configuration(runs: pd.DataFrame, dataset: str, metric: str) -> list:
    try:
        best = best_trial(runs, metric)
    except MixemError as error:
        return [Text(str(error))]
    run = commands(best, CONFIRM_SEEDS)
    return [Text(f"Trial `{best['trial_id']}`, the finished trial with the best final `{metric}` "
                 f"({best[f'final/{metric}']:.3f}), as the fields that differ from the {dataset} preset: train it "
                 f"again, and confirm it over {CONFIRM_SEEDS} seeds (preset `given`, shown in the main results)."),
            Code([run["train"], run["confirm"]])]


def _selection(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> list:
    if len(runs) < search_tables.MIN_SEARCH_TRIALS:
        return [Text(f"Left out: ranking {len(runs)} trials by a label-free score says nothing; it needs at least "
                     f"{search_tables.MIN_SEARCH_TRIALS} trials.")]
    parts = [Text("How well each label-free score would have picked among these trials, judged by ACC of the fixed "
                  "clustering: Spearman and Kendall of the score, oriented by its direction (`better`), with ACC "
                  "(1: the same ranking, -1: the reverse), the trial with the best score (`picks`), and the regret of "
                  "picking it: ACC of the best trial by ACC minus its ACC. Sorted by regret, then Spearman. The "
                  "silhouettes of the 13 clusterings share one row of their medians (`python -m analysis.selection` "
                  "lists each).")]
    common = rungs.common_epoch(runs, epochs, metric)
    for point, (frame, stage) in selection.search_points(runs, epochs, metric).items():
        where = (f"At the final evaluation of the {len(frame)} finished trials" if point == "final" else
                 f"At epoch {common}, the common point, over the {len(frame)} trials that reached it")
        best = selection.best_by_acc(frame, stage)
        if best is None:
            parts.append(Text(f"{where}: no trial has an ACC."))
        else:
            parts += [Text(f"{where}; the best by ACC is `{best[0]}` ({best[1]:.3f}):"),
                      Table(selection.summarized(selection.selection_table(frame, stage)))]
    return parts


def not_shown(trials: pd.DataFrame, baselines: pd.DataFrame, metric: str) -> str | None:
    """The line at the top of the report: which tables are left out, or rows left empty, for want of
    runs, and the command that runs them; None when nothing is missing."""
    items = []
    for dataset in sorted(trials["dataset"].unique()):
        runs = trials[trials["dataset"] == dataset]
        ran = set(runs["preset"])
        if baselines[baselines["dataset"] == dataset].empty:
            items.append(f"the no-learning baselines of {dataset} (its sweeps recorded none: "
                         f"`python -m mixem.baselines {dataset}` prints them)")
        ablate = f"python tune/ablate.py --dataset {shlex.quote(dataset)} --presets "
        main = "the MIX'EM and SimCLR rows of the main results" if "given" in ran else "the main results"
        # A component-count preset is covered by mixem runs with its K (the same configuration).
        counts = set(runs.loc[runs["preset"].isin([*COMPONENT_ABLATION, "mixem"]), "config/num_components"])
        for presets, whole, rows, missing in (
            (LOSS_ABLATION, f"{main}, the loss and K-means ablations and the paper's claims", "the loss-ablation rows",
             [preset for preset in LOSS_ABLATION if preset not in ran]),
            (COMPONENT_ABLATION, "the component count", "the component-count rows",
             [preset for preset in COMPONENT_ABLATION if ABLATIONS[preset]["num_components"] not in counts]),
        ):
            if missing:
                what = whole if len(missing) == len(presets) else f"{rows} {', '.join(missing)}"
                items.append(f"{what} (run `{ablate}{','.join(missing)}`)")
        searches = runs[runs["preset"] == ""]
        if searches.empty:
            items.append(f"the searches, their label-free model selection and the best searched configuration "
                         f"(run `python tune/sweep.py --dataset {shlex.quote(dataset)}`, then the confirm command of "
                         f"`python -m analysis.best OUTPUT`)")
        elif "given" not in ran:
            try:
                confirm = f"run `{commands(best_trial(searches, metric), CONFIRM_SEEDS)['confirm']}`"
            except MixemError:
                confirm = "let a search finish a trial first"
            items.append(f"the best searched configuration over seeds in the main results ({confirm})")
    return "Left out or empty for want of runs: " + "; ".join(items) + "." if items else None


def describe_runs(trials: pd.DataFrame, metric: str, stage: str, ranked_by: dict[str, str] | None = None) -> str:
    """The report's opening paragraph: where the runs come from and how cells read."""
    sweeps = []
    for sweep, runs in trials.groupby("sweep", sort=True):
        sweeps.append(f"`{sweep}` ({len(runs)} trials: {tables.status_counts(runs)})")
    when = {"final": "at the last evaluation of each trial",
            "best": "at the evaluation where each sweep's --metric was best (picked with the labels when the metric "
                    "uses them, so optimistic)"}[stage]
    searched = {sweep: _ranked_by(sweep, metric, ranked_by) for sweep, _ in search_tables.searches(trials)}
    if len(set(searched.values())) > 1:
        ranking = "Each search is ranked by its own --metric: " + ", ".join(
            f"`{sweep}` by {_named(score)} ({_better(score)} is better)" for sweep, score in searched.items())
    else:
        score = next(iter(searched.values()), metric)
        ranking = f"Searches are ranked by {_named(score)} ({_better(score)} is better)"
    return (f"Sweeps: {', '.join(sweeps)}. {ranking}. Metrics "
            f"are read {when}. Every ACC, NMI and ARI is of one clustering fixed before any sweep ran, "
            f"`{reported_variant('mixem')}` (K-means initialised with the mixture components' means, on the "
            f"L2-normalised embedding z), or `{reported_variant('simclr')}` for the SimCLR head, which has no mixture "
            f"components; `{ORACLE_METRIC}`, the best ACC of all variants picked with the test labels, appears only as "
            "the labelled oracle. An ablation cell is mean ± std over the finished trials (seeds) of its row, std "
            "with ddof=1, and n the number of trials. See docs/analysis.md.")


def _ranked_by(sweep: str, metric: str, ranked_by: dict[str, str] | None) -> str:
    """The score the search ``sweep`` is ranked by: its entry of ``ranked_by`` (``runs.search_metrics``), else
    ``metric``."""
    return (ranked_by or {}).get(sweep, metric)


def _better(metric: str) -> str:
    return "higher" if metric_mode(metric) == "max" else "lower"


def _named(metric: str) -> str:
    """The metric as the report names it: in backticks, and an oracle said to be one."""
    return f"`{metric}` (the test-label oracle)" if metric == ORACLE_METRIC else f"`{metric}`"


def _and(items) -> str:
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _slug(text: str) -> str:
    return "".join(character if character.isalnum() or character in "-." else "-" for character in text)


def _cell_text(value) -> str:
    return tables.number(value) if isinstance(value, float) else str(value)


def markdown_table(table: pd.DataFrame) -> str:
    def row(cells) -> str:
        return "| " + " | ".join(_cell_text(value).replace("|", "\\|") for value in cells) + " |"

    lines = [row(table.columns), "|" + "|".join("---" for _ in table.columns) + "|"]
    return "\n".join(lines + [row(values) for values in table.itertuples(index=False)])


def render_markdown(sections: list[Section], header: list[str]) -> str:
    parts = ["# MIX'EM sweep report", *header]
    for section in sections:
        parts.append(f"{'#' * section.level} {section.title}")
        for part in section.parts:
            if isinstance(part, Text):
                parts.append(part.text)
            elif isinstance(part, Table):
                parts.append(markdown_table(part.frame))
            elif isinstance(part, Code):
                parts.append("```bash\n" + "\n".join(part.lines) + "\n```")
            else:
                parts.append(f"![{part.name}]({part.name})")
    return "\n\n".join(parts) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "—": "---", "`": "", '"': "''"}


def latex_escape(text) -> str:
    return "".join(_LATEX_SPECIAL.get(character, character) for character in str(text))


def latex_table(table: pd.DataFrame, caption: str) -> str:
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             rf"\begin{{tabular}}{{{'l' * len(table.columns)}}}", r"\toprule",
             " & ".join(map(latex_escape, table.columns)) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(_cell_text(value)) for value in values) + r" \\"
              for values in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines)


def render_latex(sections: list[Section], header: list[str]) -> str:
    parts = [r"\documentclass{article}", r"\usepackage[margin=2cm]{geometry}",
             r"\usepackage{booktabs,graphicx}", r"\begin{document}", r"\section*{MIX'EM sweep report}",
             *map(latex_escape, header)]
    parent = ""
    for section in sections:
        parent = section.title if section.level == 2 else parent
        caption = section.title if section.level == 2 else f"{parent}: {section.title}"
        command = "subsection" if section.level == 2 else "subsubsection"
        parts.append(rf"\{command}*{{{latex_escape(section.title)}}}")
        for part in section.parts:
            if isinstance(part, Text):
                parts.append(latex_escape(part.text))
            elif isinstance(part, Table):
                parts.append(latex_table(part.frame, caption))
            elif isinstance(part, Code):
                # Shell continuations keep long commands on the page and still paste into a shell.
                wrapped = [" \\\n    ".join(textwrap.wrap(line, 90, break_long_words=False, break_on_hyphens=False))
                           for line in part.lines]
                parts.append("{\\small\n\\begin{verbatim}\n" + "\n".join(wrapped) + "\n\\end{verbatim}\n}")
            else:
                parts.append(rf"\includegraphics[width=\linewidth]{{{part.name}}}")
    parts.append(r"\end{document}")
    return "\n\n".join(parts) + "\n"


def write_report(paths: list[str | Path], out: str | Path | None = None, stage: str = "final",
                 metric: str | None = None) -> Path:
    """Build the report of the sweep folders ``paths`` into ``out`` (the first folder by default),
    each search ranked by ``metric``, by default by its own --metric, and return the path of
    its Markdown file."""
    trials, epochs, baselines = load_runs(*paths), load_epochs(*paths), load_baselines(*paths)
    ranked_by = search_metrics(paths, metric, trials)
    metric = resolve_metric(paths, metric)
    first = Path(paths[0])
    out = Path(out) if out is not None else (first if first.is_dir() else first.parent)
    if out.exists() and not out.is_dir():
        raise MixemError(f"--out {out} is a file; pass a folder to write the report into.")
    sections = build_sections(trials, epochs, baselines, metric, stage, ranked_by)
    missing = not_shown(trials, baselines, metric)
    header = [describe_runs(trials, metric, stage, ranked_by),
              *baseline_verdicts(trials, baselines, metric, stage, ranked_by),
              *([missing] if missing else [])]
    plotted = {part.name: part.figure for section in sections for part in section.parts if isinstance(part, Plot)}
    written = sorted([*plotted, LATEX_FILE, MARKDOWN_FILE])
    try:
        earlier = _claim(out, written)
        for name, figure in plotted.items():
            write_atomic(out / name, partial(figure.savefig, format="png", dpi=110))
        write_atomic(out / LATEX_FILE, render_latex(sections, header))
        write_atomic(out / MARKDOWN_FILE, render_markdown(sections, header))
        # A figure of an earlier report that this one does not draw would mislead; removed only once the new
        # report is whole, so a failed write leaves the old report and its figures as they were. Only files an
        # earlier report wrote (its manifest) are removed: a user's own components.png is never touched.
        for name in sorted(set(earlier) - set(written)):
            (out / name).unlink(missing_ok=True)
        write_atomic(out / MANIFEST_FILE, _manifest_text(written))
    except OSError as error:
        raise MixemError(f"Cannot write the report into {out} ({error.strerror}); "
                         "pass --out a writable folder.") from None
    return out / MARKDOWN_FILE


def _claim(out: Path, names: list[str]) -> list[str]:
    """The files an earlier report wrote into ``out`` (its manifest), once ``names`` are known to be free to
    write: a file of the same name that no report wrote is refused, never overwritten. The manifest then lists
    the earlier files and ``names``, so a report interrupted while writing still knows its files."""
    earlier = _read_manifest(out)
    foreign = [name for name in names if (out / name).exists() and name not in earlier]
    if foreign:
        raise MixemError(f"{out / foreign[0]} exists and was not written by python -m analysis.report (it is not in "
                         f"{out / MANIFEST_FILE}); move it away, or pass another --out.")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / MANIFEST_FILE, _manifest_text(sorted({*earlier, *names})))
    return earlier


def _read_manifest(out: Path) -> list[str]:
    path = out / MANIFEST_FILE
    if not path.exists():
        return []
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise MixemError(f"{path} cannot be read ({error}); delete it and the report files it lists, or pass "
                         "another --out.") from None
    names = [line for line in lines if line and not line.startswith("#")]
    bad = [name for name in names if Path(name).name != name or name in (".", "..") or name == MANIFEST_FILE]
    if bad:
        raise MixemError(f"{path} is corrupt: {bad[0]!r} is not the name of a file of a report; delete it and the "
                         "report files it lists, or pass another --out.")
    return names


def _manifest_text(names: list[str]) -> str:
    return "# The files python -m analysis.report wrote here; it replaces or deletes only these.\n" + "".join(
        f"{name}\n" for name in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("sweeps", nargs="+", metavar="DIR",
                        help="sweep output folders (--output of tune/sweep.py or tune/ablate.py), read together")
    parser.add_argument("--out", type=Path, help="folder to write the report into (default: the first DIR)")
    parser.add_argument("--metric", help="score to rank every search by, a key of mixem.scores.METRIC_KEYS or "
                        "VALIDATION_KEYS (default: each search by its own --metric, from its sweep.json)")
    parser.add_argument("--stage", choices=tables.STAGES, default="final",
                        help="read metrics at the last evaluation (final) or at the evaluation where the sweep's "
                             "--metric was best (best) (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweeps, args.out, args.stage, args.metric)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {report}, {report.with_name(LATEX_FILE)} and the figures they link")
    return 0


if __name__ == "__main__":
    sys.exit(main())
