"""Execute analysis/ablation.ipynb and save it in place with its outputs, so that it reads on GitHub unrun.

    python -m analysis.notebook          # results/fashion-mnist/{ablation,search-*,confirm-*}
    python -m analysis.notebook --sweeps sweeps/fm-ablation sweeps/fm-search

The notebook reads the sweep folders in $MIXEM_SWEEPS (separated by os.pathsep, ":" on Linux), else
``DEFAULT_SWEEPS`` (relative to the repository root); ``--sweeps`` sets that variable for the run.
It shows the sections of ``analysis.report`` with ``show``. Needs the dev extras (nbclient,
ipykernel). Folders the notebook could not read are refused before the kernel starts, and a
notebook that fails is not saved: the file keeps its earlier outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from analysis.runs import load_epochs, load_runs, resolve_metric
from mixem.errors import MixemError
from mixem.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "analysis" / "ablation.ipynb"
SWEEPS_VARIABLE = "MIXEM_SWEEPS"
DEFAULT_SWEEPS = tuple(f"results/fashion-mnist/{name}" for name in (
    "ablation", "search-mixem", "search-simclr", "confirm-mixem", "confirm-simclr"))
CELL_SECONDS = 600


def sweep_folders() -> list[Path]:
    """The folders the notebook reads: $MIXEM_SWEEPS, else ``DEFAULT_SWEEPS``; relative ones from the
    repository root, since Jupyter runs a notebook in its own folder."""
    listed = os.environ.get(SWEEPS_VARIABLE)
    names = [name for name in listed.split(os.pathsep) if name] if listed else DEFAULT_SWEEPS
    return [ROOT / name for name in names]


def show(sections, key: str) -> None:
    """Display in a notebook every section of ``analysis.report.build_sections`` of kind ``key``: its
    title and text as Markdown, its tables, commands and figures; a line when there is none."""
    from IPython.display import Markdown, display  # only inside a notebook: not a dependency of the report

    from analysis.report import TITLES, Code, Table, Text

    shown = [section for section in sections if section.key == key]
    if not shown:
        display(Markdown(f"_{TITLES[key]}: left out for want of runs (the line at the top names them)._"))
    for section in shown:
        display(Markdown(f"{'#' * section.level} {section.title}"))
        for part in section.parts:
            if isinstance(part, Text):
                display(Markdown(part.text))
            elif isinstance(part, Table):
                display(part.frame)
            elif isinstance(part, Code):
                display(Markdown("```bash\n" + "\n".join(part.lines) + "\n```"))
            else:
                display(part.figure)


def execute(sweeps: list[Path] | None = None):
    """The notebook, executed on ``sweeps`` (default: as ``sweep_folders``); raises nbclient's
    CellExecutionError when a cell fails."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # tqdm (imported by Optuna) warns in a kernel without ipywidgets, and its warning names a machine path.
    env = {**os.environ, "PYTHONWARNINGS": "ignore:IProgress not found"}
    if sweeps is not None:
        env[SWEEPS_VARIABLE] = os.pathsep.join(str(Path(folder).resolve()) for folder in sweeps)
    # No timings recorded: the same results give the same file.
    client = NotebookClient(notebook, timeout=CELL_SECONDS, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute(env=env)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.notebook", description=__doc__.split("\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--sweeps", nargs="+", type=Path, metavar="DIR",
                        help=f"sweep folders to read (default: ${SWEEPS_VARIABLE}, else {', '.join(DEFAULT_SWEEPS)})")
    args = parser.parse_args(argv)
    import nbformat
    from nbclient.exceptions import CellExecutionError

    try:
        # What the notebook's first cells read, so that bad folders fail here in one sentence, before
        # the kernel starts, rather than as a failed cell minutes later.
        folders = args.sweeps or sweep_folders()
        load_runs(*folders), load_epochs(*folders)
        resolve_metric(folders, None)
        notebook = execute(args.sweeps)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except CellExecutionError as error:
        print(f"error: a cell of {NOTEBOOK.name} failed ({error.ename}: {error.evalue}); the notebook was not "
              "saved.", file=sys.stderr)
        return 2
    write_atomic(NOTEBOOK, nbformat.writes(notebook) + "\n")
    print(f"wrote {NOTEBOOK.relative_to(ROOT)} with its outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
