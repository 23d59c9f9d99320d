"""tune/sweep.py and tune/ablate.py refuse bad input before any work: one sentence, exit 2, no file
touched. And tune/run.py's lock on the output folder. None of this starts Ray."""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixem.errors import MixemError
from tune import ablate, sweep
from tune.run import LOCK_FILE, OutputLock

ROOT = Path(__file__).resolve().parents[1]


def error_of(main, capsys, argv) -> str:
    assert main(argv) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and message.endswith(".") and "\n" not in message, message
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "mnist"], "Unknown dataset 'mnist'"),
    ([], "--dataset is required"),
    (["--dataset", "digits", "--num-samples", "0"], "--num-samples must be at least 1"),
    (["--dataset", "digits", "--max-concurrent", "0"], "--max-concurrent must be at least 1"),
    (["--dataset", "digits", "--workers-per-trial", "0"], "--workers-per-trial must be at least 1"),
    (["--dataset", "digits", "--cpus-per-worker", "0"], "--cpus-per-worker must be more than 0"),
    (["--dataset", "digits", "--cpus-per-worker", "nan"], "--cpus-per-worker must be more than 0"),
    (["--dataset", "digits", "--gpus-per-worker", "-1"], "--gpus-per-worker must be at least 0"),
    (["--dataset", "digits", "--max-failures", "-1"], "--max-failures must be at least 0"),
    (["--dataset", "digits", "--max-epochs", "0"], "--max-epochs must be at least 1"),
    (["--dataset", "digits", "--grace-epochs", "0"], "--grace-epochs must be at least 1"),
    (["--dataset", "digits", "--max-epochs", "3", "--grace-epochs", "5"], "cannot exceed --max-epochs"),
    (["--dataset", "digits", "--reduction-factor", "1"], "--reduction-factor must be a finite number more than 1"),
    (["--dataset", "digits", "--reduction-factor", "nan"], "--reduction-factor must be a finite number more than 1"),
    (["--dataset", "digits", "--reduction-factor", "inf"], "--reduction-factor must be a finite number more than 1"),
    (["--dataset", "digits", "--space", "w_push=0", "w_push=0.1"], "--space sets w_push twice"),
    (["--dataset", "digits", "--checkpoint-every", "-2"], "--checkpoint-every must be at least 0"),
    (["--dataset", "digits", "--seed", "-1"], "--seed must be at least 0"),
    (["--dataset", "digits", "--metric", "accuracy"], "--metric 'accuracy' is not a score"),
    (["--dataset", "digits", "--space", "w_entropy=-2"], "--w-entropy must be >= 0"),
    (["--dataset", "digits", "--space", "batch_size=1"], "--batch-size must be at least 2"),
    (["--dataset", "digits", "--data-dir", "/no/such/folder"], "is not a folder"),
    (["--dataset", "digits", "--address", "127.0.0.1:1"], "needs --storage"),
    (["--dataset", "digits", "--address", "127.0.0.1:1", "--storage", "/tmp/x"], "is a folder on this machine"),
    (["--dataset", "digits", "--address", "127.0.0.1:1", "--storage", "s3://b/m", "--data-dir", "data"],
     "--data-dir data is relative, and on a cluster every node reads it"),
    (["--dataset", "digits", "--callback", "nope"], "--callback 'nope' is not MODULE:NAME"),
    (["--dataset", "digits", "--space", "train_split=train+test,bogus"],
     "--train-split bogus is not a split of digits; choose from train, test (joined with +)"),
    (["--dataset", "stl10", "--space", "eval_split=unlabeled"], "--eval-split unlabeled has no labels"),
    (["--dataset", "digits", "--callback", "no_such_module:Logger"], "--callback no_such_module:Logger cannot be made"),
    (["--dataset", "digits", "--callback", "collections:OrderedDict"], "made a OrderedDict, not a ray.tune.Callback"),
    (["--resume"], "need --output"),
])
def test_sweep_refuses_bad_flags(tmp_path, capsys, argv, message):
    output = tmp_path / "out"
    assert message in error_of(sweep.main, capsys, [*argv, "--output", str(output)] if argv != ["--resume"] else argv)
    assert not output.exists()


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--presets", "simclr,bogus"], "Unknown preset(s) bogus"),
    (["--space", "w_push=0.3"], "which preset"),
    (["--space", "lr=1e-3,1e-2"], "searches nothing"),
    (["--space", "lr=0.1", "lr=0.2"], "--space sets lr twice"),
    (["--presets", ""], "--presets names no preset"),
    (["--presets", ",,"], "--presets names no preset"),
    (["--presets", "mixem,simclr,mixem"], "--presets names mixem more than once"),
])
def test_ablation_refuses_bad_flags(tmp_path, capsys, argv, message):
    output = tmp_path / "out"
    assert message in error_of(ablate.main, capsys, ["--dataset", "digits", *argv, "--output", str(output)])
    assert not output.exists()


def test_an_output_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    output = tmp_path / "results"
    output.write_text("precious")
    assert "is a file" in error_of(sweep.main, capsys, ["--dataset", "digits", "--output", str(output)])
    assert output.read_text() == "precious"


def test_a_sweep_folder_is_resumed_only_by_its_own_script_and_never_overwritten(tmp_path, capsys):
    folder = tmp_path / "sweep"
    folder.mkdir()
    settings = {"kind": "ablation", "name": "x", "storage": str(folder / "ray"), "args": {"dataset": "digits"}}
    (folder / "sweep.json").write_text(json.dumps(settings))
    assert "holds a ablation, not a sweep" in error_of(sweep.main, capsys, ["--output", str(folder), "--resume"])
    assert "already holds a sweep" in error_of(sweep.main, capsys, ["--dataset", "digits", "--output", str(folder)])
    (folder / "sweep.json").write_text("{broken")
    assert "is corrupt" in error_of(sweep.main, capsys, ["--output", str(folder), "--resume"])
    assert (folder / "sweep.json").read_text() == "{broken"
    assert "no sweep to resume" in error_of(sweep.main, capsys, ["--output", str(tmp_path / "none"), "--resume"])
    assert "holds no sweep" in error_of(sweep.main, capsys, ["--output", str(tmp_path / "new"), "--resume-from",
                                                              str(tmp_path / "storage")])


def test_relative_paths_are_refused_under_ray_job_submit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # what `ray job submit` sets for its entrypoint
    monkeypatch.chdir(tmp_path)
    assert "is relative" in error_of(sweep.main, capsys, ["--dataset", "digits", "--output", "sweeps/x"])
    assert "is relative" in error_of(sweep.main, capsys, ["--dataset", "digits", "--output", str(tmp_path / "o"),
                                                          "--storage", "ray-results"])
    assert not (tmp_path / "sweeps").exists()


def test_the_output_lock_refuses_a_second_driver_and_dies_with_its_process(tmp_path):
    first = OutputLock(tmp_path)
    with pytest.raises(MixemError, match=f"Another sweep driver \\(pid {os.getpid()}"):
        OutputLock(tmp_path)
    first.release()
    OutputLock(tmp_path).release()  # free again
    # A driver killed with SIGKILL releases it too: the operating system drops the lock.
    script = (f"import sys, time, pathlib; sys.path.insert(0, {str(ROOT)!r}); from tune.run import OutputLock; "
              f"lock = OutputLock(pathlib.Path({str(tmp_path)!r})); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MixemError, match=f"pid {holder.pid}"):
            OutputLock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 10
    while True:
        try:
            OutputLock(tmp_path).release()
            break
        except MixemError:
            assert time.time() < deadline
            time.sleep(0.1)
    assert (tmp_path / LOCK_FILE).exists()


def test_the_sweep_driver_imports_no_torch():
    """Everything the driver builds, short of running Ray: torch stays in the trials' processes."""
    script = """
import sys, argparse
from pathlib import Path
import tune.sweep, tune.ablate
from tune.plans import sweep_plan
from tune.recording import RecordResults
from tune.space import resolve_space
from tune.trial import TrialResources, make_trainable
resources = TrialResources(1, 1, 0, "gloo")
make_trainable(resources, output=Path("/tmp"), train_storage="/tmp/s", data_dir=None, metric="acc_max",
               checkpoint_every=0, max_failures=0, driver_node="127.0.0.1", compile=False)
fixed, space = resolve_space("digits", {}, {"dataset": "digits", "epochs": 2}, search=True)
args = argparse.Namespace(metric="acc_max", max_epochs=2, grace_epochs=1, reduction_factor=2, search="optuna",
                          search_seed=None, num_samples=4, seed=0)
sweep_plan(args, fixed, space, 2, [])
RecordResults(Path("/tmp/o"), resources, "acc_max", train_storage="/tmp/s", mirror=None)
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("metric, mode", [("val_loss", "min"), ("val_contrastive", "min"),
                                          ("val_marginal_entropy", "max"), ("compinit_z_l2_silhouette", "max"),
                                          ("compinit_z_l2_acc", "max")])
def test_a_search_without_labels_can_rank_by_each_label_free_score(tmp_path, metric, mode):
    """--metric takes every label-free score, and Tune is given its direction."""
    from mixem.scores import metric_mode
    from tune.arguments import resolve_args

    args = resolve_args(sweep.build_parser().parse_args(["--dataset", "digits", "--metric", metric,
                                                         "--output", str(tmp_path / "out")]), "sweep")
    assert args.metric == metric and metric_mode(args.metric) == mode
    assert not (tmp_path / "out").exists()


def test_resume_refuses_changed_settings_and_a_corrupt_sweep_json(tmp_path, capsys):
    """--resume takes only where-and-how flags anew; a sweep.json whose values would be refused on the
    command line is refused on resume too. Nothing is written."""
    import shutil
    fixture = Path(__file__).parent / "fixtures" / "search"
    output = tmp_path / "sweep"
    shutil.copytree(fixture, output)
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    message = error_of(sweep.main, capsys, ["--output", str(output), "--resume", "--metric", "val_loss"])
    assert "--metric cannot change on --resume" in message
    message = error_of(sweep.main, capsys, ["--output", str(output), "--resume", "--num-samples", "9", "--seed", "3"])
    assert "--seed, --num-samples cannot change on --resume" in message
    original = (output / "sweep.json").read_text()
    settings = json.loads(original)
    for field, value, expected in [("reduction_factor", 0.5, "--reduction-factor must be a finite number"),
                                   ("metric", "bogus", "--metric 'bogus' is not a score"),
                                   ("grace_epochs", 99, "cannot exceed --max-epochs")]:
        (output / "sweep.json").write_text(json.dumps({**settings, "args": {**settings["args"], field: value}}))
        assert expected in error_of(sweep.main, capsys, ["--output", str(output), "--resume"])
    (output / "sweep.json").write_text(json.dumps({**settings, "storage": None}))
    assert "sweep.json is corrupt" in error_of(sweep.main, capsys, ["--output", str(output), "--resume"])
    (output / "sweep.json").write_text(original)  # only the changes above were the test's own
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before


def resumed(tmp_path: Path, argv: list[str], **saved) -> argparse.Namespace:
    """The arguments ``tune/sweep.py --output OUT --resume ARGV`` resolves to, for a copy of the fixture
    search whose sweep.json holds ``saved``."""
    import shutil

    from tune.arguments import resolve_args
    from tune.run import given_flags

    output = tmp_path / "sweep"
    shutil.copytree(Path(__file__).parent / "fixtures" / "search", output)
    settings = json.loads((output / "sweep.json").read_text())
    (output / "sweep.json").write_text(json.dumps({**settings, "args": {**settings["args"], **saved}}))
    argv = ["--output", str(output), "--resume", *argv]
    parser = sweep.build_parser()
    args = parser.parse_args(argv)
    args.given = given_flags(parser, argv)
    return resolve_args(args, "sweep")


def test_resume_takes_a_where_flag_given_at_its_default_value(tmp_path):
    """--max-failures 2 and --no-compile are defaults, and still replace what the sweep started with."""
    restored = resumed(tmp_path, ["--max-failures", "2", "--no-compile"], max_failures=5, compile=True)
    assert (restored.max_failures, restored.compile) == (2, False)
    kept = resumed(tmp_path / "again", [], max_failures=5, compile=True)
    assert (kept.max_failures, kept.compile) == (5, True)


def test_resume_names_a_data_dir_missing_on_this_machine(tmp_path, capsys):
    output = tmp_path / "sweep"
    with pytest.raises(MixemError, match="--data-dir /no/such/data, the sweep's, is not a folder on this machine; "
                                         "pass --data-dir"):
        resumed(tmp_path, [], data_dir="/no/such/data")
    again = resumed(tmp_path / "again", ["--data-dir", str(tmp_path)], data_dir="/no/such/data")
    assert again.data_dir == str(tmp_path)
    assert output.exists()


def test_resume_from_a_relative_storage_path_is_made_absolute(tmp_path, monkeypatch, capsys):
    import shutil

    from tune.results import STORAGE_FOLDER

    experiment = tmp_path / "storage" / "sweep-digits-1"
    (experiment / STORAGE_FOLDER).mkdir(parents=True)
    for name in ("sweep.json", "trials.parquet", "epochs.parquet"):
        shutil.copy(Path(__file__).parent / "fixtures" / "search" / name, experiment / STORAGE_FOLDER / name)
    monkeypatch.chdir(tmp_path)
    from tune.arguments import resolve_args

    args = sweep.build_parser().parse_args(["--output", "here", "--resume-from", "storage/sweep-digits-1"])
    restored = resolve_args(args, "sweep")
    assert (restored.storage, restored.name) == (str(tmp_path / "storage"), "sweep-digits-1")
    assert "names no experiment folder" in error_of(sweep.main, capsys, ["--output", "there", "--resume-from", "s3://"])


def test_on_a_cluster_the_data_dir_is_checked_on_the_nodes_not_here(tmp_path):
    """The head never trains: an absolute --data-dir missing here, or a URI, is left to the pre-flight on each
    node type (tune.cluster.preflight)."""
    from tune.arguments import resolve_args

    for data_dir in ("/data/on/the/nodes", "s3://bucket/datasets"):
        args = sweep.build_parser().parse_args(["--dataset", "digits", "--address", "127.0.0.1:1", "--storage",
                                                "s3://bucket/mixem", "--data-dir", data_dir,
                                                "--output", str(tmp_path / "out")])
        args.given = []
        assert resolve_args(args, "sweep").data_dir == data_dir


def test_a_ray_job_whose_stop_would_kill_the_sweep_too_soon_is_warned(monkeypatch, capsys):
    from tune.run import warn_if_ray_job_stop_kills

    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # what a `ray job submit` entrypoint has
    monkeypatch.delenv("RAY_JOB_STOP_WAIT_TIME_S", raising=False)
    warn_if_ray_job_stop_kills()
    assert "kill this sweep 3 s after asking it to stop" in capsys.readouterr().err
    monkeypatch.setenv("RAY_JOB_STOP_WAIT_TIME_S", "120")
    warn_if_ray_job_stop_kills()
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    monkeypatch.setenv("RAY_JOB_STOP_WAIT_TIME_S", "1")
    warn_if_ray_job_stop_kills()  # not a Ray job: no `ray job stop` to fear
    assert capsys.readouterr().err == ""
