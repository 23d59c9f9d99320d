"""analysis.report on the checked-in smoke sweep (golden file), on bad input, and the notebook.

The fixture is real sweep output (tests/fixtures/README.md has the command that regenerates it).
After an intended change to the report, rewrite the golden file with
``MIXEM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_analysis_report.py`` and review its diff.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import notebook
from analysis.baselines import load_baselines
from analysis.report import MANIFEST_FILE, build_sections, main, not_shown, write_report
from analysis.runs import load_epochs, load_runs
from mixem.errors import MixemError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SWEEPS = [FIXTURES / "ablation", FIXTURES / "search"]
GOLDEN = FIXTURES / "golden_report.md"
METRIC = "compinit_z_l2_acc"


def test_report_equals_the_golden_file(tmp_path):
    report = write_report(SWEEPS, tmp_path)
    text = report.read_text()
    if os.environ.get("MIXEM_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    linked = [line[line.index("](") + 2 : -1] for line in text.splitlines() if line.startswith("![")]
    assert linked and all((tmp_path / name).stat().st_size > 0 for name in linked)
    assert sorted(path.name for path in tmp_path.glob("*.png")) == sorted(linked)
    latex = (tmp_path / "report.tex").read_text()
    assert latex.count(r"\begin{tabular}") == text.count("\n|---")  # the same tables
    assert latex.count(r"\begin{verbatim}") == text.count("```bash")
    assert r"\end{document}" in latex


def test_a_report_replaces_and_deletes_only_the_files_it_wrote(tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    write_report(SWEEPS[:1], out)
    written = sorted(path.name for path in out.iterdir() if path.name not in ("notes.md", MANIFEST_FILE))
    listed = [line for line in (out / MANIFEST_FILE).read_text().splitlines() if not line.startswith("#")]
    assert listed == written and "report.md" in listed and "components.png" in listed
    # A figure an earlier report drew and this one does not is removed; the user's own files stay.
    (out / "search_old_digits.png").write_bytes(b"old")
    (out / MANIFEST_FILE).write_text((out / MANIFEST_FILE).read_text() + "search_old_digits.png\n")
    write_report(SWEEPS[:1], out)
    assert not (out / "search_old_digits.png").exists() and (out / "notes.md").read_text() == "mine"
    # A same-named file no report wrote is refused, never overwritten, and nothing else is written.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "components.png").write_bytes(b"my figure")
    message = _error(capsys, SWEEPS[0], "--out", mine)
    assert message == (f"error: {mine / 'components.png'} exists and was not written by python -m analysis.report "
                       f"(it is not in {mine / MANIFEST_FILE}); move it away, or pass another --out.")
    assert [path.name for path in mine.iterdir()] == ["components.png"]
    assert (mine / "components.png").read_bytes() == b"my figure"
    # A manifest naming a path outside its folder is corrupt, and nothing is deleted through it.
    (out / MANIFEST_FILE).write_text("report.md\n../../notes.md\n")
    message = _error(capsys, SWEEPS[0], "--out", out)
    assert "is corrupt: '../../notes.md' is not the name of a file of a report" in message
    assert (out / "notes.md").exists() and (out / "report.md").exists()


def test_golden_report_shows_the_search_sections_and_no_oracle_choice():
    text = GOLDEN.read_text()
    titles = [line for line in text.splitlines() if line.startswith("#")]
    assert titles == ["# MIX'EM sweep report", "## No-learning baselines", "## Main results",
                      "## Does training help, and does MIX'EM beat SimCLR?", "## Loss ablation", "## K-means ablation",
                      "## Component count", "## Do the components become classes?", "## The paper's claims",
                      "## Search `search` on digits", "### Top trials", "### Sensitivity", "### Best configuration",
                      "### Label-free model selection", "## Cost", "## Learning curves"]
    assert "| 2ea2ddf2 |" in text  # an early-stopped trial among the top trials
    assert "| parameter | values | epoch 1 (n=6) | epoch 2 (n=3) |" in text  # early-stopped trials count at epoch 1
    assert "python tune/ablate.py --dataset digits --presets given --seeds 3" in text
    assert "At epoch 1, the common point, over the 6 trials" in text
    assert "K-means variant" not in text and "_No runs" not in text
    assert text.count("acc_max") == 3  # the header, the main results' text and its oracle column
    # The smoke runs do not beat the pixels, and the report says so at the top, in a line a reader cannot miss.
    assert "\nwarning: the best finished trial of search `search` by `compinit_z_l2_acc`" in text
    assert "| digits | no learning | K-means on raw pixels |" in text
    assert "| digits | 0 classes through pi | mixem argmax pi |" in text


def test_report_reads_sweeps_with_trial_seconds(tmp_path):
    """Sweeps of the current code also write trial_seconds into epochs.parquet; the report does not change."""
    copies = []
    for sweep in SWEEPS:
        copy = tmp_path / "in" / sweep.name
        shutil.copytree(sweep, copy)
        epochs = pd.read_parquet(copy / "epochs.parquet")
        epochs.assign(trial_seconds=epochs["epoch"] * 10.0).to_parquet(copy / "epochs.parquet")
        copies.append(copy)
    trials, epochs = load_runs(*copies), load_epochs(*copies)
    assert "trial_seconds" in epochs.columns
    sections = build_sections(trials, epochs, load_baselines(*copies), METRIC, "final")
    reference = build_sections(load_runs(*SWEEPS), load_epochs(*SWEEPS), load_baselines(*SWEEPS), METRIC, "final")
    assert [section.title for section in sections] == [section.title for section in reference]


def test_load_runs_reads_several_folders_and_joins_epochs():
    trials, epochs = load_runs(*SWEEPS), load_epochs(*SWEEPS)
    assert set(trials["sweep"]) == {"ablation", "search"} == set(epochs["sweep"])
    joined = epochs.merge(trials[["sweep", "trial_id"]], on=["sweep", "trial_id"])
    assert len(joined) == len(epochs)
    with pytest.raises(MixemError, match="are the same sweep folder; pass each sweep folder once"):
        load_runs(SWEEPS[0], SWEEPS[0] / "trials.parquet")
    # Another file of a sweep folder stands for its folder, not for a trials file.
    assert load_runs(SWEEPS[1] / "sweep.json").equals(load_runs(SWEEPS[1]))


def test_sections_without_runs_are_left_out_and_named_with_their_command():
    search, baselines = load_runs(SWEEPS[1]), load_baselines(SWEEPS[1])
    keys = {section.key for section in build_sections(search, load_epochs(SWEEPS[1]), baselines, METRIC, "final")}
    assert keys == {"baselines", "mixture", "search", "cost", "curves"}
    line = not_shown(search, baselines, METRIC)
    assert line.startswith("Left out or empty for want of runs: the main results, the loss and K-means ablations")
    assert ("(run `python tune/ablate.py --dataset digits --presets simclr,mixture_only,entropy,entropy_instance,"
            "mixem,mixem_entropy`)") in line
    assert "the component count (run `python tune/ablate.py --dataset digits --presets k10,k20,k40`)" in line
    assert "--presets given --seeds 3 --max-epochs 2 --space eval_every=1" in line  # from the best trial
    no_baselines = not_shown(search, baselines.iloc[:0], METRIC)
    assert "the no-learning baselines of digits (its sweeps recorded none: `python -m mixem.baselines digits`" in \
        no_baselines

    ablation, baselines = load_runs(SWEEPS[0]), load_baselines(SWEEPS[0])
    keys = {section.key for section in build_sections(ablation, load_epochs(SWEEPS[0]), baselines, METRIC, "final")}
    assert "search" not in keys and {"main", "questions", "claims"} <= keys
    line = not_shown(ablation, baselines, METRIC)
    # k10 is the mixem preset's configuration on ten classes: its runs fill the K = 10 row.
    assert "the component-count rows k40 (run `python tune/ablate.py --dataset digits --presets k40`)" in line
    assert "(run `python tune/sweep.py --dataset digits`" in line


def test_metric_flag_ranks_the_searches(tmp_path):
    assert main([str(SWEEPS[1]), "--out", str(tmp_path), "--metric", "val_loss"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "ranked by `val_loss` (lower is better)" in text
    lines = text[text.index("### Top trials") :].splitlines()
    top = lines[lines.index(next(line for line in lines if line.startswith("|---"))) + 1]  # the first row
    best = load_runs(SWEEPS[1]).sort_values("final/val_loss").iloc[0]
    assert top.startswith(f"| {best['trial_id']} |")


def test_each_search_is_ranked_by_its_own_metric(tmp_path):
    # A SimCLR search is run with --metric kmeans_z_l2_acc: reported beside a MIX'EM search, it is ranked by
    # that, not by the first folder's compinit_z_l2_acc (which its trials may lack: an empty table before).
    other = tmp_path / "search-other"
    shutil.copytree(SWEEPS[1], other)
    settings = json.loads((other / "sweep.json").read_text())
    settings["args"]["metric"] = "val_loss"
    (other / "sweep.json").write_text(json.dumps(settings))
    assert main([str(SWEEPS[1]), str(other), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert f"`search` by `{METRIC}` (higher is better), `search-other` by `val_loss` (lower is better)" in text
    tops = [part.splitlines() for part in text.split("### Top trials")[1:]]
    firsts = [lines[lines.index(next(line for line in lines if line.startswith("|---"))) + 1] for lines in tops]
    runs = load_runs(SWEEPS[1])  # the top trials are of any status
    assert firsts[0].startswith(f"| {runs.sort_values(f'final/{METRIC}').iloc[-1]['trial_id']} |")
    assert firsts[1].startswith(f"| {runs.sort_values('final/val_loss').iloc[0]['trial_id']} |")
    # a search folder without its sweep.json is still read, ranked by the report's metric as before
    bare = tmp_path / "search-bare"
    shutil.copytree(SWEEPS[1], bare)
    (bare / "sweep.json").unlink()
    assert main([str(SWEEPS[1]), str(bare), "--out", str(tmp_path / "bare")]) == 0
    assert f"Searches are ranked by `{METRIC}`" in (tmp_path / "bare" / "report.md").read_text()
    # --metric still ranks every search by one score
    assert main([str(SWEEPS[1]), str(other), "--out", str(tmp_path / "one"), "--metric", "val_loss"]) == 0
    assert "Searches are ranked by `val_loss` (lower is better)" in (tmp_path / "one" / "report.md").read_text()


def _error(capsys, *args) -> str:
    assert main([str(arg) for arg in args]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and message.endswith(".") and "\n" not in message
    return message


def test_bad_input_is_one_sentence_and_exit_2(tmp_path, capsys):
    assert "does not exist" in _error(capsys, tmp_path / "nowhere")
    assert "holds no trials.parquet" in _error(capsys, tmp_path)

    (tmp_path / "trials.parquet").write_bytes(b"")
    assert "not a readable Parquet file (Parquet file size is 0 bytes); re-run" in _error(capsys, tmp_path)
    (tmp_path / "trials.parquet").write_bytes((SWEEPS[0] / "trials.parquet").read_bytes()[:3000])  # cut short
    message = _error(capsys, tmp_path)
    assert message == (f"error: {tmp_path / 'trials.parquet'} is not a readable Parquet file (Parquet magic bytes "
                       "not found in footer); re-run the sweep, or restore the file from its copy in the sweep's "
                       "--storage.")

    pd.DataFrame({"x": [1.0]}).to_parquet(tmp_path / "trials.parquet")
    assert "lacks the columns trial_id, preset, dataset and" in _error(capsys, tmp_path)

    trials = pd.read_parquet(SWEEPS[0] / "trials.parquet")
    trials.drop(columns=["final/acc_max"]).to_parquet(tmp_path / "trials.parquet")
    assert "lacks the columns final/acc_max, so" in _error(capsys, tmp_path)

    trials.iloc[:0].to_parquet(tmp_path / "trials.parquet")
    assert "holds no trials yet" in _error(capsys, tmp_path)

    trials.to_parquet(tmp_path / "trials.parquet")
    assert "holds no epochs.parquet" in _error(capsys, tmp_path)

    shutil.copy(SWEEPS[0] / "epochs.parquet", tmp_path / "epochs.parquet")
    message = _error(capsys, tmp_path)
    assert "holds no sweep.json" in message and "pass --metric" in message
    assert "--metric accuracy is not a score" in _error(capsys, tmp_path, "--metric", "accuracy")
    (tmp_path / "file").write_text("")
    assert "is a file" in _error(capsys, tmp_path, "--metric", METRIC, "--out", tmp_path / "file")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["epochs.parquet", "file", "trials.parquet"]


@pytest.mark.parametrize(("column", "value", "held"), [
    (f"final/{METRIC}", "0.5", "text where numbers belong"), ("best/val_loss", "low", "text where numbers belong"),
    ("wall_seconds", "1h", "text where numbers belong"), ("status", 1, "numbers where text belongs"),
    ("trial_id", 7, "numbers where text belongs"), ("epochs", True, "bool values where numbers belong")])
def test_a_trials_column_of_the_wrong_type_is_refused(tmp_path, capsys, column, value, held):
    sweep = tmp_path / "search"
    shutil.copytree(SWEEPS[1], sweep)
    trials = pd.read_parquet(sweep / "trials.parquet")
    trials.assign(**{column: value}).to_parquet(sweep / "trials.parquet")
    before = {path: path.read_bytes() for path in sweep.iterdir()}
    message = _error(capsys, sweep, "--metric", METRIC)
    assert message.startswith(f"error: {sweep / 'trials.parquet'} is corrupt: column {column} holds {held}; re-run")
    assert {path: path.read_bytes() for path in sweep.iterdir()} == before


def test_an_epochs_column_of_the_wrong_type_is_refused(tmp_path, capsys):
    sweep = tmp_path / "search"
    shutil.copytree(SWEEPS[1], sweep)
    epochs = pd.read_parquet(sweep / "epochs.parquet")
    epochs.assign(**{METRIC: epochs[METRIC].astype(str)}).to_parquet(sweep / "epochs.parquet")
    assert f"is corrupt: column {METRIC} holds text where numbers belong" in _error(capsys, sweep)
    epochs.drop(columns="eval_seconds").to_parquet(sweep / "epochs.parquet")
    assert "epochs.parquet lacks the columns eval_seconds, so" in _error(capsys, sweep)
    assert sorted(path.name for path in sweep.iterdir()) == ["baselines.parquet", "epochs.parquet", "sweep.json",
                                                             "trials.parquet"]


@pytest.mark.parametrize(("column", "value", "allowed"), [
    (f"final/{METRIC}", float("inf"), "between 0 and 1"), (f"best/{METRIC}", 1.7, "between 0 and 1"),
    ("final/compinit_z_l2_ari", -3.0, "between -1 and 1"), ("final/val_loss", float("-inf"), "a finite number"),
    ("wall_seconds", -5.0, "between 0 and inf"), ("epochs", -1, "between 0 and inf"),
    ("final/pi_max_mean", 2.0, "between 0 and 1")])
def test_a_trials_value_out_of_its_range_is_refused(tmp_path, capsys, column, value, allowed):
    sweep = tmp_path / "search"
    shutil.copytree(SWEEPS[1], sweep)
    trials = pd.read_parquet(sweep / "trials.parquet")
    trials.loc[trials.index[-1], column] = value
    trials.to_parquet(sweep / "trials.parquet")
    before = {path: path.read_bytes() for path in sweep.iterdir()}
    message = _error(capsys, sweep, "--metric", METRIC)
    assert message.startswith(f"error: {sweep / 'trials.parquet'} is corrupt: column {column} holds {value!r} where "
                              f"{allowed} belongs; re-run")
    assert {path: path.read_bytes() for path in sweep.iterdir()} == before


def test_an_unknown_status_is_refused(tmp_path, capsys):
    sweep = tmp_path / "search"
    shutil.copytree(SWEEPS[1], sweep)
    trials = pd.read_parquet(sweep / "trials.parquet")
    trials.assign(status="done").to_parquet(sweep / "trials.parquet")
    message = _error(capsys, sweep, "--metric", METRIC)
    assert "is corrupt: status 'done' is none of finished, early_stopped, errored; re-run" in message


def test_an_epoch_twice_and_an_epoch_out_of_range_are_refused(tmp_path, capsys):
    sweep = tmp_path / "search"
    shutil.copytree(SWEEPS[1], sweep)
    epochs = pd.read_parquet(sweep / "epochs.parquet")
    pd.concat([epochs, epochs.tail(1)]).to_parquet(sweep / "epochs.parquet")
    last = epochs.iloc[-1]
    message = _error(capsys, sweep)
    assert (f"{sweep / 'epochs.parquet'} is corrupt: epoch {last['epoch']} of trial {last['trial_id']!r} appears "
            "twice in it; re-run") in message
    epochs.assign(epoch=epochs["epoch"] - 1).to_parquet(sweep / "epochs.parquet")
    assert "is corrupt: column epoch holds 0 where between 1 and inf belongs" in _error(capsys, sweep)
    epochs.assign(loss_contrastive=float("nan")).assign(**{METRIC: float("inf")}).to_parquet(sweep / "epochs.parquet")
    assert f"is corrupt: column {METRIC} holds inf where between 0 and 1 belongs" in _error(capsys, sweep)


def test_a_parquet_that_pandas_rewrote_is_read_alike(tmp_path):
    sweep = tmp_path / "search"
    shutil.copytree(SWEEPS[1], sweep)
    before = load_runs(sweep)
    pd.read_parquet(sweep / "trials.parquet").to_parquet(sweep / "trials.parquet")
    pd.testing.assert_frame_equal(load_runs(sweep), before)


def test_a_folder_given_twice_is_refused(tmp_path, capsys):
    sweep = tmp_path / "search"
    shutil.copytree(SWEEPS[1], sweep)
    (tmp_path / "other").mkdir()
    for again in (sweep, sweep / "trials.parquet", tmp_path / "other" / ".." / "search"):
        message = _error(capsys, sweep, again, "--out", tmp_path / "report")
        assert message == f"error: {sweep} and {again} are the same sweep folder; pass each sweep folder once."
    assert not (tmp_path / "report").exists()


def test_a_trial_twice_in_one_file_is_a_corrupt_file(tmp_path, capsys):
    sweep = tmp_path / "search"
    shutil.copytree(SWEEPS[1], sweep)
    trials = pd.read_parquet(sweep / "trials.parquet")
    pd.concat([trials, trials.iloc[[2]]]).to_parquet(sweep / "trials.parquet")
    message = _error(capsys, sweep, "--out", tmp_path / "report")
    assert message.startswith(f"error: {sweep / 'trials.parquet'} is corrupt: trial {trials['trial_id'][2]!r} "
                              "appears twice in it; re-run the sweep")
    assert not (tmp_path / "report").exists()


def test_cli_entry_point_exits_2():
    done = subprocess.run([sys.executable, "-m", "analysis.report", "no/such/sweep"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: no/such/sweep does not exist; pass the --output folder of a "
                                   "tune/sweep.py or tune/ablate.py run.")


def test_notebook_executes_on_the_fixture_without_saving(monkeypatch):
    saved = notebook.NOTEBOOK.read_bytes()
    monkeypatch.setenv(notebook.SWEEPS_VARIABLE, os.pathsep.join(map(str, SWEEPS)))
    executed = notebook.execute()
    outputs = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type in ("error", "stream")]
    # The report's figures and tables, every one (the golden report is of the same folders).
    golden = GOLDEN.read_text()
    assert sum("image/png" in output.get("data", {}) for output in outputs) == golden.count("\n![")
    assert sum("text/html" in output.get("data", {}) for output in outputs) == golden.count("\n|---")
    assert notebook.NOTEBOOK.read_bytes() == saved


def test_notebook_refuses_bad_folders_before_the_kernel_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(notebook, "execute", lambda sweeps=None: pytest.fail("the kernel started"))
    saved = notebook.NOTEBOOK.read_bytes()
    sweep = tmp_path / "search"
    shutil.copytree(SWEEPS[1], sweep)

    def refused() -> str:
        assert notebook.main(["--sweeps", str(sweep), str(SWEEPS[0])]) == 2
        message = capsys.readouterr().err.strip()
        assert message.startswith("error: ") and message.endswith(".") and "\n" not in message
        return message

    epochs = (sweep / "epochs.parquet").read_bytes()
    (sweep / "epochs.parquet").write_bytes(epochs[: len(epochs) // 2])  # a copy cut short
    assert "epochs.parquet is not a readable Parquet file" in refused()
    (sweep / "epochs.parquet").write_bytes(epochs)
    settings = (sweep / "sweep.json").read_text()
    (sweep / "sweep.json").write_text(settings.replace(METRIC, "bogus"))
    assert "sweep.json is corrupt: its --metric 'bogus' is not a score" in refused()
    (sweep / "sweep.json").unlink()
    assert "holds no sweep.json to read the sweep's --metric from" in refused()
    assert notebook.NOTEBOOK.read_bytes() == saved


@pytest.mark.parametrize(("command", "args"), [(main, ["--met", "val_loss"]), (main, ["--st", "best"]),
                                               (notebook.main, ["--sw"])],
                         ids=["report --met", "report --st", "notebook --sw"])
def test_an_abbreviated_flag_is_refused(tmp_path, capsys, monkeypatch, command, args):
    monkeypatch.setattr(notebook, "execute", lambda sweeps=None: pytest.fail("the kernel started"))
    with pytest.raises(SystemExit) as exited:
        command([str(SWEEPS[1]), "--out", str(tmp_path / "report"), *args] if command is main else [*args, "x"])
    assert exited.value.code == 2 and f"unrecognized arguments: {args[0]}" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()
