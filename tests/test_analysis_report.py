"""analysis.report on the checked-in smoke sweep (golden file), on bad input, and the notebook.

The fixture is real sweep output (tests/fixtures/README.md has the command that regenerates it).
After an intended change to the report, rewrite the golden file with
``MIXEM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_analysis_report.py`` and review its diff.
"""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from analysis.report import main, write_report
from analysis.runs import load_epochs, load_runs
from mixem.errors import MixemError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SWEEPS = [FIXTURES / "ablation", FIXTURES / "search"]
GOLDEN = FIXTURES / "golden_report.md"


def test_report_equals_the_golden_file(tmp_path):
    report = write_report(SWEEPS, tmp_path)
    text = report.read_text()
    if os.environ.get("MIXEM_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    linked = [line[line.index("](") + 2 : -1] for line in text.splitlines() if line.startswith("![")]
    assert linked and all((tmp_path / name).stat().st_size > 0 for name in linked)
    latex = (tmp_path / "report.tex").read_text()
    assert latex.count(r"\begin{tabular}") == text.count("\n|---")  # the same tables
    assert r"\end{document}" in latex


def test_load_runs_reads_several_folders_and_joins_epochs():
    trials, epochs = load_runs(*SWEEPS), load_epochs(*SWEEPS)
    assert set(trials["sweep"]) == {"ablation", "search"} == set(epochs["sweep"])
    joined = epochs.merge(trials[["sweep", "trial_id"]], on=["sweep", "trial_id"])
    assert len(joined) == len(epochs)
    with pytest.raises(MixemError, match="appears twice"):
        load_runs(SWEEPS[0], SWEEPS[0] / "trials.parquet")


def _error(capsys, *args) -> str:
    assert main([str(arg) for arg in args]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and message.endswith(".") and "\n" not in message
    return message


def test_bad_input_is_one_sentence_and_exit_2(tmp_path, capsys):
    assert "does not exist" in _error(capsys, tmp_path / "nowhere")
    assert "holds no trials.parquet" in _error(capsys, tmp_path)

    (tmp_path / "trials.parquet").write_bytes(b"")
    assert "not a readable Parquet file" in _error(capsys, tmp_path)

    pd.DataFrame({"x": [1.0]}).to_parquet(tmp_path / "trials.parquet")
    assert "lacks the columns trial_id, preset, dataset and" in _error(capsys, tmp_path)

    trials = pd.read_parquet(SWEEPS[0] / "trials.parquet")
    trials.drop(columns=["final/acc_max"]).to_parquet(tmp_path / "trials.parquet")
    assert "lacks the columns final/acc_max, so" in _error(capsys, tmp_path)

    trials.iloc[:0].to_parquet(tmp_path / "trials.parquet")
    assert "holds no trials yet" in _error(capsys, tmp_path)

    trials.to_parquet(tmp_path / "trials.parquet")
    assert "holds no epochs.parquet" in _error(capsys, tmp_path)
    assert not (tmp_path / "report.md").exists()  # nothing half-written


def test_cli_entry_point_exits_2():
    done = subprocess.run([sys.executable, "-m", "analysis.report", "no/such/sweep"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: no/such/sweep does not exist; pass the --output folder of a "
                                   "tune/sweep.py or tune/ablate.py run.")


def test_notebook_executes_on_the_fixture():
    notebook = nbformat.read(ROOT / "analysis" / "ablation.ipynb", as_version=4)
    # The "python3" kernel spec runs this interpreter (the venv's); the notebook reads the fixture by default.
    env = {key: value for key, value in os.environ.items() if key != "MIXEM_SWEEP_DIR"}
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "analysis")}})
    client.execute(env=env)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 5
    assert sum("text/html" in output.get("data", {}) for output in outputs) == 7  # the tables
