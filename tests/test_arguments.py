"""tune/sweep.py and tune/ablate.py refuse bad input before any work: one sentence, exit 2, no file
touched. And tune/run.py's lock on the output folder. None of this starts Ray."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixem.errors import MixemError
from mixem.files import LOCK_FILE, FolderLock
from tune import ablate, sweep
from tune.arguments import given_flags, settings_from_args

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_ray_started():
    """Every refusal here comes before Ray starts; a test that started it would also leave its address in
    this process's environment for the next module's Ray."""
    before = {name: value for name, value in os.environ.items() if name.startswith("RAY_")}
    yield
    import ray

    assert not ray.is_initialized()
    assert {name: value for name, value in os.environ.items() if name.startswith("RAY_")} == before


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
    # Values the trials would reject, or coerce: refused before Ray starts.
    (["--dataset", "digits", "--space", "num_components=10.7"], "--num-components must be a whole number, not 10.7"),
    (["--dataset", "digits", "--space", "w_push=true"], "--w-push must be a number, not True"),
    (["--dataset", "digits", "--space", "head=bogus"], "--head must be one of mixture, simclr, not 'bogus'"),
    (["--dataset", "digits", "--space", "eval_split=nope"], "--eval-split nope is not a split of digits"),
    # Searches that cannot produce their metric.
    (["--dataset", "digits", "--space", "head=simclr", "w_entropy=0", "w_instance=0", "w_pull=0", "w_push=0"],
     "--metric compinit_z_l2_acc needs the mixture head, and the SimCLR head (--space head) has no mixture"),
    (["--dataset", "digits", "--metric", "val_loss", "--space", "val_fraction=0"],
     "--metric val_loss is measured on the validation images, and --space val_fraction=0 holds none out"),
    # Resources that can never be had.
    (["--dataset", "digits", "--space", "num_components=200000"],
     "--num-components 200000 needs about 28,856.3 GiB for the mixture head and its push term"),
    (["--dataset", "digits", "--cpus-per-worker", "4096"], "A trial needs 4096 CPUs (1 worker(s) x 4096) but this"),
    (["--dataset", "digits", "--storage", "/dev/null"], "--storage /dev/null: /dev/null is a file, not a folder"),
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


def test_results_without_their_sweep_json_are_never_adopted(tmp_path, capsys):
    """A folder holding a sweep's Parquet files (or a training run's files) but no sweep.json is refused by a new
    sweep and by an ablation: neither adopts those trials as its own nor overwrites them."""
    import shutil

    for name in ("trials.parquet", "epochs.parquet", "config.json", "checkpoint"):
        output = tmp_path / name.replace(".", "-")
        shutil.copytree(Path(__file__).parent / "fixtures" / "search", output)
        (output / "sweep.json").unlink()
        for other in ("trials.parquet", "epochs.parquet", "baselines.parquet"):
            if other != name:
                (output / other).unlink()
        if name in ("config.json", "checkpoint"):
            (output / name).mkdir() if name == "checkpoint" else (output / name).write_text("{}")
        before = {path.name: path.stat().st_mtime_ns for path in output.iterdir()}
        for main in (sweep.main, ablate.main):
            message = error_of(main, capsys, ["--dataset", "digits", "--output", str(output)])
            assert message == (f"error: {output} holds results ({name}) but no sweep.json, so no sweep can continue "
                               "them or write there; pass another --output.")
        assert {path.name: path.stat().st_mtime_ns for path in output.iterdir()} == before


def test_an_unwritable_output_or_storage_is_one_sentence(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "read-only"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    message = error_of(sweep.main, capsys, ["--dataset", "digits", "--output", str(locked / "sweep")])
    assert message == (f"error: --output {locked / 'sweep'}: {locked} is not writable by this user; pass a folder "
                       "you can write to.")
    message = error_of(sweep.main, capsys, ["--dataset", "digits", "--output", str(tmp_path / "out"),
                                            "--storage", str(locked / "ray")])
    assert message.startswith(f"error: --storage {locked / 'ray'}: {locked} is not writable")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["read-only"]


def test_a_sweep_json_that_is_not_utf8_is_named_on_resume(tmp_path, capsys):
    import shutil

    output = tmp_path / "sweep"
    shutil.copytree(Path(__file__).parent / "fixtures" / "search", output)
    (output / "sweep.json").write_bytes(b'{"kind": "sweep", "args": {"dataset": "digits\xff"}}')
    message = error_of(sweep.main, capsys, ["--output", str(output), "--resume"])
    assert message.startswith(f"error: {output / 'sweep.json'} is corrupt (UnicodeDecodeError: ")
    assert message.endswith("the sweep cannot be resumed.")


def test_two_sweeps_started_in_the_same_second_get_different_names(tmp_path):
    parser = sweep.build_parser()
    names = set()
    for index in range(20):
        argv = ["--dataset", "digits", "--output", str(tmp_path / str(index))]
        settings, _ = settings_from_args(parser.parse_args(argv), given_flags(parser, argv), "sweep")
        names.add(settings.name)
    assert len(names) == 20


def test_relative_paths_are_refused_under_ray_job_submit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # what `ray job submit` sets for its entrypoint
    monkeypatch.chdir(tmp_path)
    assert "is relative" in error_of(sweep.main, capsys, ["--dataset", "digits", "--output", "sweeps/x"])
    assert "is relative" in error_of(sweep.main, capsys, ["--dataset", "digits", "--output", str(tmp_path / "o"),
                                                          "--storage", "ray-results"])
    assert not (tmp_path / "sweeps").exists()


def OutputLock(folder: Path) -> FolderLock:  # noqa: N802 (the sweep driver's lock, as tune/run.py takes it)
    return FolderLock(folder, "sweep driver", "wait for it to end.")


def test_the_output_lock_refuses_a_second_driver_and_dies_with_its_process(tmp_path):
    first = OutputLock(tmp_path)
    with pytest.raises(MixemError, match=f"Another sweep driver \\(pid {os.getpid()}"):
        OutputLock(tmp_path)
    first.release()
    OutputLock(tmp_path).release()  # free again
    # A driver killed with SIGKILL releases it too: the operating system drops the lock.
    script = (f"import sys, time, pathlib; sys.path.insert(0, {str(ROOT)!r}); from mixem.files import FolderLock; "
              f"lock = FolderLock(pathlib.Path({str(tmp_path)!r}), 'sweep driver', ''); print('locked', flush=True); "
              "time.sleep(60)")
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
from tune.settings import Search, Settings
fixed, space = resolve_space("digits", {}, {"dataset": "digits", "epochs": 2}, search=True)
settings = Settings(Search(num_samples=4, grace_epochs=1, reduction_factor=2), "digits", 2, Path("/tmp/o"), "n",
                    "/tmp/s", metric="acc_max")
sweep_plan(settings, fixed, space, 2, [])
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

    args = sweep.build_parser().parse_args(["--dataset", "digits", "--metric", metric,
                                            "--output", str(tmp_path / "out")])
    settings, _ = settings_from_args(args, ["dataset", "metric", "output"], "sweep")
    assert settings.metric == metric and metric_mode(settings.metric) == mode
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


def resumed(tmp_path: Path, argv: list[str], **saved):
    """The settings ``tune/sweep.py --output OUT --resume ARGV`` resolves to, for a copy of the fixture
    search whose sweep.json holds ``saved``."""
    import shutil

    output = tmp_path / "sweep"
    shutil.copytree(Path(__file__).parent / "fixtures" / "search", output)
    settings = json.loads((output / "sweep.json").read_text())
    (output / "sweep.json").write_text(json.dumps({**settings, "args": {**settings["args"], **saved}}))
    argv = ["--output", str(output), "--resume", *argv]
    parser = sweep.build_parser()
    settings, resuming = settings_from_args(parser.parse_args(argv), given_flags(parser, argv), "sweep")
    assert resuming
    return settings


def test_resume_takes_a_where_flag_given_at_its_default_value(tmp_path):
    """--max-failures 2 and --no-compile are defaults, and still replace what the sweep started with."""
    restored = resumed(tmp_path, ["--max-failures", "2", "--no-compile"], max_failures=5, compile=True)
    assert (restored.placement.max_failures, restored.placement.compile) == (2, False)
    kept = resumed(tmp_path / "again", [], max_failures=5, compile=True)
    assert (kept.placement.max_failures, kept.placement.compile) == (5, True)


def test_resume_names_a_data_dir_missing_on_this_machine(tmp_path, capsys):
    output = tmp_path / "sweep"
    with pytest.raises(MixemError, match="--data-dir /no/such/data, the sweep's, is not a folder on this machine; "
                                         "pass --data-dir"):
        resumed(tmp_path, [], data_dir="/no/such/data")
    again = resumed(tmp_path / "again", ["--data-dir", str(tmp_path)], data_dir="/no/such/data")
    assert again.placement.data_dir == str(tmp_path)
    assert output.exists()


def test_resume_from_a_relative_storage_path_is_made_absolute(tmp_path, monkeypatch, capsys):
    import shutil

    from tune.results import STORAGE_FOLDER

    experiment = tmp_path / "storage" / "sweep-digits-1"
    (experiment / STORAGE_FOLDER).mkdir(parents=True)
    for name in ("sweep.json", "trials.parquet", "epochs.parquet"):
        shutil.copy(Path(__file__).parent / "fixtures" / "search" / name, experiment / STORAGE_FOLDER / name)
    monkeypatch.chdir(tmp_path)
    args = sweep.build_parser().parse_args(["--output", "here", "--resume-from", "storage/sweep-digits-1"])
    restored, _ = settings_from_args(args, ["output", "resume_from"], "sweep")
    assert (restored.storage, restored.name) == (str(tmp_path / "storage"), "sweep-digits-1")
    assert "names no experiment folder" in error_of(sweep.main, capsys, ["--output", "there", "--resume-from", "s3://"])


def test_on_a_cluster_the_data_dir_is_checked_on_the_nodes_not_here(tmp_path):
    """The head never trains: an absolute --data-dir missing here, or a URI, is left to the pre-flight on each
    node type (tune.cluster.preflight)."""
    for data_dir in ("/data/on/the/nodes", "s3://bucket/datasets"):
        args = sweep.build_parser().parse_args(["--dataset", "digits", "--address", "127.0.0.1:1", "--storage",
                                                "s3://bucket/mixem", "--data-dir", data_dir,
                                                "--output", str(tmp_path / "out")])
        assert settings_from_args(args, [], "sweep")[0].placement.data_dir == data_dir


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
