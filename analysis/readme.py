"""Numbers in prose come from code: the generated blocks of a Markdown file, rewritten from the sweeps they name.

    python -m analysis.readme results/fashion-mnist/README.md          # rewrite its generated blocks
    python -m analysis.readme --check results/*/README.md docs/*.md    # exit 1 if any block is stale

A generated block is delimited by two HTML comments, invisible when the Markdown is rendered::

    <!-- generated: questions, claims from ablation confirm -->
    ...tables written by this command...
    <!-- end generated -->

``from`` names sweep folders relative to the Markdown file; the names before it are kinds of sections
of ``analysis.report`` (``baselines``, ``main``, ``questions``, ``claims``, ``mixture``, ``components``,
``loss``, ``kmeans``, ``search``, ``cost``...), whose tables are written into the block as the report
writes them, or ``efficiency TARGET``, the summary of ``analysis.efficiency`` at that fixed target.
``tests/test_docs.py`` checks every block of the project's docs and results, and that no score-like
number (0.123) stands in their prose outside a block.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from analysis import efficiency
from analysis.baselines import load_baselines
from analysis.report import TITLES, Section, Table, Text, build_sections, markdown_table
from analysis.runs import load_epochs, load_runs, resolve_metric, search_metrics
from mixem.errors import MixemError
from mixem.files import write_atomic

BLOCK = re.compile(r"(<!-- generated: (?P<spec>.+?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.DOTALL)
# A score as reports print them: three decimals (ACC 0.812, a difference +0.031). Outside a generated block it
# would be a number no command checks; literals in `code` and prices ($0.023) are not scores.
SCORE_LIKE = re.compile(r"(?<![\w.$])[+-]?0\.\d{3}(?!\d)")
CODE_SPAN = re.compile(r"`[^`\n]*`")


def parse_spec(spec: str) -> tuple[list[str], list[str]]:
    """(section kinds or "efficiency TARGET", sweep folders) of a block's spec "KIND, KIND from DIR DIR"."""
    kinds, _, folders = spec.partition(" from ")
    kinds = [kind.strip() for kind in kinds.split(",") if kind.strip()]
    if not kinds or not folders.split():
        raise MixemError(f"A generated block's spec {spec!r} is not 'KIND, KIND from DIR DIR'; fix the comment.")
    for kind in kinds:
        if kind not in TITLES and not kind.startswith("efficiency "):
            raise MixemError(f"A generated block names {kind!r}, which is not a kind of report section "
                             f"({', '.join(TITLES)}) nor 'efficiency TARGET'; fix the comment.")
    return kinds, folders.split()


def render_block(kinds: list[str], folders: list[Path]) -> str:
    """The Markdown of a block: each kind's tables (and its sections' first paragraph), in the order named."""
    trials, epochs, baselines = load_runs(*folders), load_epochs(*folders), load_baselines(*folders)
    metric = resolve_metric(folders, None)
    sections = build_sections(trials, epochs, baselines, metric, "final", search_metrics(folders, None, trials))
    parts = []
    for kind in kinds:
        if kind.startswith("efficiency "):
            parts.append(_efficiency(folders, metric, float(kind.split()[1])))
            continue
        chosen = [section for section in sections if section.key == kind]
        if not chosen:
            raise MixemError(f"The sweeps {', '.join(map(str, folders))} have no '{kind}' section to write.")
        parts += [_render(section) for section in chosen]
    return "\n\n".join(part for part in parts if part) + "\n"


def _render(section: Section) -> str:
    lines = [f"**{section.title}**"]
    lines += [markdown_table(part.frame) for part in section.parts if isinstance(part, Table)]
    lines += [part.text for part in section.parts if isinstance(part, Text) and part.text.startswith("warning")]
    return "\n\n".join(lines)


def _efficiency(folders: list[Path], metric: str, target: float) -> str:
    table = efficiency.efficiency_table(efficiency.load_searches(folders), metric, target)
    summary = efficiency.summary(table).reset_index()
    return f"**Search efficiency, target {metric} >= {target:g}**\n\n" + markdown_table(summary.round(3))


def regenerate(path: Path) -> str:
    """The text of ``path`` with every generated block rewritten."""
    text = path.read_text()

    def rewrite(match: re.Match) -> str:
        kinds, folders = parse_spec(match["spec"])
        return match.group(1) + render_block(kinds, [path.parent / folder for folder in folders]) + match.group(4)

    return BLOCK.sub(rewrite, text)


def stray_scores(text: str) -> list[str]:
    """The score-like numbers of ``text`` outside its generated blocks."""
    return SCORE_LIKE.findall(CODE_SPAN.sub("", BLOCK.sub("", text)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.readme", description=__doc__.split("\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("files", nargs="+", type=Path, help="Markdown files with generated blocks")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    stale = []
    try:
        for path in args.files:
            if not path.is_file():
                raise MixemError(f"{path} is not a file; pass Markdown files.")
            try:
                text = path.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise MixemError(f"{path} cannot be read as UTF-8 text ({error}); pass Markdown files.") from None
            new = regenerate(path)
            if new != text:
                stale.append(path)
                if not args.check:
                    write_atomic(path, new)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check and stale:
        print(f"stale generated blocks in {', '.join(map(str, stale))}: run python -m analysis.readme on them",
              file=sys.stderr)
        return 1
    print("\n".join(f"{'stale' if args.check else 'rewrote'} {path}" for path in stale) or "every block is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
