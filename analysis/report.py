"""Write the report of one or more sweep folders: Markdown and LaTeX tables, and the PNGs they link.

    python -m analysis.report sweeps/fashion-mnist                      # writes into that folder
    python -m analysis.report sweeps/ablation sweeps/search --out reports/digits
    python -m analysis.report sweeps/fashion-mnist --stage best          # metrics at the best epoch

Writes ``OUT/report.md``, ``OUT/report.tex`` and one PNG per figure; ``OUT`` is the first folder
unless ``--out`` names another. Every table and figure is computed before anything is written,
and each file is replaced whole, so bad input leaves earlier results as they were. The report
holds no timestamp or machine path: the same sweep output gives the same report.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis import plots, tables
from analysis.runs import load_epochs, load_runs
from mixem.errors import MixemError
from mixem.files import write_atomic

MARKDOWN_FILE = "report.md"
LATEX_FILE = "report.tex"


@dataclass
class Section:
    title: str
    about: str  # one paragraph under the title: what the table shows and how its rows were chosen
    table: pd.DataFrame | None  # None: a section of figures only
    empty: str  # what to say when the table has no rows
    figures: dict[str, Figure | None]  # file name -> figure (None: nothing to draw)


def build_sections(trials: pd.DataFrame, epochs: pd.DataFrame, stage: str = "final") -> list[Section]:
    """Every table and figure of the report, in order."""
    return [
        Section("Main results",
                "Full MIX'EM (preset `mixem`) and the SimCLR baseline (preset `simclr`), K-means on raw and on "
                "L2-normalised representations, beside the paper's ACC where the dataset matches.",
                tables.main_table(trials, stage), "No runs of the presets `mixem` or `simclr`.", {}),
        Section("Loss ablation",
                "One loss term added per row (presets of `mixem.presets.LOSS_ABLATION`), term (ii) in the authors' "
                "code form (1 - max pi); the last row is full MIX'EM with term (ii) as the paper's entropy.",
                tables.loss_table(trials, stage), "No runs of the loss-ablation presets.",
                {"spread.png": plots.spread_figure(trials, stage)}),
        Section("K-means ablation",
                "Every clustering of every representation for the runs of `mixem` and `simclr`: k-means++ vs "
                "K-means initialised with the mixture components' means, raw vs L2-normalised, and argmax pi.",
                tables.kmeans_table(trials, stage), "No runs of the presets `mixem` or `simclr`.",
                {"kmeans_spread.png": plots.kmeans_spread_figure(trials, stage)}),
        Section("Component count",
                "Full MIX'EM with K mixture components (presets of `mixem.presets.COMPONENT_ABLATION`).",
                tables.component_table(trials, stage), "No runs of the component-count presets.",
                {"components.png": plots.components_figure(trials, stage)}),
        Section("Sensitivity",
                "ACC against each searched hyperparameter over the finished trials of searches (preset \"\"): "
                "Spearman's rank correlation, and the importance by Optuna's fANOVA and mean-decrease-impurity "
                "evaluators (summing to 1 over the parameters).",
                tables.sensitivity_table(trials, stage), "No finished trials of a search (`tune/sweep.py`).",
                {"weights.png": plots.weights_figure(trials, stage)}),
        Section("The paper's claims",
                "Each row compares A against B on these runs: (1) component-mean init beats k-means++ in mean and "
                "spread, (2) L2-normalised beats raw for SimCLR, (3) each loss term adds ACC.",
                tables.claims_table(trials, stage), "No runs of the presets the claims compare.", {}),
        Section("Cost",
                "Compute behind every row, trials of every status included.",
                tables.cost_table(trials), "No trials.", {}),
        Section("Learning curves",
                "Total loss and acc_max (the best clustering at each evaluated epoch) of every trial.",
                None, "", {"learning_curves.png": plots.learning_curves_figure(trials, epochs)}),
    ]


def markdown_table(table: pd.DataFrame) -> str:
    def row(cells) -> str:
        return "| " + " | ".join(str(value).replace("|", "\\|") for value in cells) + " |"

    lines = [row(table.columns), "|" + "|".join("---" for _ in table.columns) + "|"]
    return "\n".join(lines + [row(values) for values in table.itertuples(index=False)])


def render_markdown(sections: list[Section], header: str) -> str:
    parts = ["# MIX'EM sweep report", header]
    for section in sections:
        parts += [f"## {section.title}", section.about]
        if section.table is not None:
            parts.append(markdown_table(section.table) if len(section.table) else f"_{section.empty}_")
        parts += [f"![{name}]({name})" for name, figure in section.figures.items() if figure is not None]
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
    lines += [" & ".join(map(latex_escape, values)) + r" \\" for values in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines)


def render_latex(sections: list[Section], header: str) -> str:
    parts = [r"\documentclass{article}", r"\usepackage[margin=2cm]{geometry}",
             r"\usepackage{booktabs,graphicx}", r"\begin{document}", r"\section*{MIX'EM sweep report}",
             latex_escape(header)]
    for section in sections:
        parts += [rf"\subsection*{{{latex_escape(section.title)}}}", latex_escape(section.about)]
        if section.table is not None:
            parts.append(latex_table(section.table, section.title) if len(section.table)
                         else latex_escape(section.empty))
        parts += [rf"\includegraphics[width=\linewidth]{{{name}}}" for name, figure in section.figures.items()
                  if figure is not None]
    parts.append(r"\end{document}")
    return "\n\n".join(parts) + "\n"


def describe_runs(trials: pd.DataFrame, stage: str) -> str:
    """The report's opening paragraph: where the runs come from and how cells read."""
    sweeps = []
    for sweep, runs in trials.groupby("sweep", sort=True):
        counts = runs["status"].value_counts()
        statuses = ", ".join(f"{counts[status]} {status}" for status in sorted(counts.index))
        sweeps.append(f"`{sweep}` ({len(runs)} trials: {statuses})")
    when = {"final": "at the last evaluation of each trial",
            "best": "at the epoch where acc_max peaked (chosen with the labels, so optimistic)"}[stage]
    return (f"Sweeps: {', '.join(sweeps)}. Metrics are read {when}. A cell is mean ± std over the finished trials "
            f"(seeds) of its row, std with ddof=1, and n the number of trials; where a row reports one clustering, "
            f"it is the K-means variant with the highest mean ACC, named in the row. See docs/analysis.md.")


def write_report(paths: list[str | Path], out: str | Path | None = None, stage: str = "final") -> Path:
    """Build the report of the sweep folders ``paths`` into ``out`` (the first folder by default)
    and return the path of its Markdown file."""
    trials, epochs = load_runs(*paths), load_epochs(*paths)
    sections = build_sections(trials, epochs, stage)
    header = describe_runs(trials, stage)
    first = Path(paths[0])
    out = Path(out) if out is not None else (first if first.is_dir() else first.parent)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for section in sections:
            for name, figure in section.figures.items():
                if figure is None:
                    (out / name).unlink(missing_ok=True)  # a figure of an earlier report would mislead
                else:
                    write_atomic(out / name, partial(figure.savefig, format="png", dpi=110))
        write_atomic(out / LATEX_FILE, render_latex(sections, header))
        write_atomic(out / MARKDOWN_FILE, render_markdown(sections, header))
    except OSError as error:
        raise MixemError(f"Cannot write the report into {out} ({error.strerror}); "
                         "pass --out a writable folder.") from None
    return out / MARKDOWN_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n")[0])
    parser.add_argument("sweeps", nargs="+", metavar="DIR",
                        help="sweep output folders (--output of tune/sweep.py or tune/ablate.py), read together")
    parser.add_argument("--out", type=Path, help="folder to write the report into (default: the first DIR)")
    parser.add_argument("--stage", choices=tables.STAGES, default="final",
                        help="read metrics at the last evaluation (final) or at the epoch where acc_max peaked "
                             "(best) (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweeps, args.out, args.stage)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {report}, {report.with_name(LATEX_FILE)} and the figures they link")
    return 0


if __name__ == "__main__":
    sys.exit(main())
