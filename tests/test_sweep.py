"""tune/sweep.py end to end on a local Ray (CPU, digits, tiny configs), and its fault tolerance:
a driver killed with SIGKILL at an unlucky moment or stopped with SIGTERM, a second driver, a
resume from the storage alone, trials that diverge or raise. tune/ablate.py and multi-node
clusters run in test_sweep_cluster.py.

One Ray per module, with its own temp dir and HOME (Ray writes ~/.ray). Sweeps run in this
process through ``main``, except the killed ones, which run as the CLI in subprocesses that join
this module's Ray (``--address``, with a storage folder on this machine that is vouched shared).
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from mixem.files import remove_dead_scratch_folders
from tests.callbacks import LOG_ENV
from tests.environment import kept_environ
from tune import cluster, sweep
from tune.results import EPOCHS_FILE, TRIALS_FILE, epochs_schema, trials_schema
from tune.trial import TRIAL_FOLDER_PREFIX

ROOT = Path(__file__).resolve().parents[1]
# Every searched weight fixed: the trials of a test differ only where the test says so.
FIXED = ["num_components=10", "w_entropy=2", "w_instance=0.1", "w_pull=0.1", "w_push=0.05", "temperature=0.5",
         "kmeans_n_init=2"]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    import ray

    # ray.init turns token authentication on by setting RAY_AUTH_MODE in this process, with the
    # token under HOME: both are undone at the end, so the next module's Ray starts clean.
    # start_ray also sets variables that workers inherit: restored too.
    names = ("HOME", "PYTHONPATH", "RAY_AUTH_MODE", "RAY_API_SERVER_ADDRESS", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER",
             "TMPDIR", *cluster.TRAIN_SETTINGS)
    with kept_environ(*names):
        os.environ.pop("RAY_AUTH_MODE", None)
        os.environ["HOME"] = str(tmp_path_factory.mktemp("home"))
        # Unix socket paths must stay short, so the temp dir is a folder directly under /tmp.
        temp_dir = tempfile.mkdtemp(dir="/tmp", prefix="mxs-")
        # The workers' (and the driver's) temporary folder, where trials keep their run folders: this module's own.
        os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("scratch"))
        saved_tempdir, tempfile.tempdir = tempfile.tempdir, None
        cluster.start_ray(None, verbose=False, num_cpus=2, _temp_dir=temp_dir)  # the sweep's own way to start Ray
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()
        tempfile.tempdir = saved_tempdir
        shutil.rmtree(temp_dir, ignore_errors=True)


def read_results(output: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials, epochs = pd.read_parquet(output / TRIALS_FILE), pd.read_parquet(output / EPOCHS_FILE)
    assert list(trials.columns) == trials_schema().names
    assert list(epochs.columns) == epochs_schema().names
    return trials, epochs


def assert_each_epoch_once(trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    """Every trial's epochs are in epochs.parquet once each, 1..its epochs, and nothing else is."""
    per_trial = epochs.groupby("trial_id")["epoch"].apply(list).to_dict()
    assert per_trial == {row.trial_id: list(range(1, row.epochs + 1)) for row in trials.itertuples()
                         if row.epochs > 0}


def live_placement_groups() -> list:
    import ray

    return [pg for pg in ray.util.placement_group_table().values() if pg["state"] != "REMOVED"]


def train_workers() -> set[str]:
    from ray.util.state import list_actors

    # This module's dashboard by name: other Rays may run on this machine.
    from tune.ray_internals import dashboard_address

    dashboard = dashboard_address()
    actors = list_actors(address=dashboard, filters=[("class_name", "=", "RayTrainWorker")], limit=1000)
    return {actor["actor_id"] for actor in actors}


def test_sweep_writes_one_row_per_trial_and_asha_stops_the_weak(local_ray, tmp_path):
    """A grid of a good and a useless lr, one at a time: the first sets the bar at ASHA's rung. A third
    trial after the stopped one runs normally (a reused actor of a stopped trial used to error)."""
    output = tmp_path / "sweep"
    started = time.time()
    code = sweep.main(["--dataset", "digits", "--search", "grid", "--space", *FIXED, "lr=1e-3,1e-9,2e-3",
                       "--max-epochs", "2", "--grace-epochs", "1", "--reduction-factor", "2", "--max-concurrent", "1",
                       "--output", str(output)])
    assert code == 0
    trials, epochs = read_results(output)
    assert len(trials) == 3 and trials["trial_id"].is_unique and (trials["error"] == "").all()
    by_lr = trials.set_index("config/lr")
    assert by_lr.loc[1e-3, "status"] == "finished" and by_lr.loc[1e-3, "epochs"] == 2
    assert by_lr.loc[2e-3, "status"] in ("finished", "early_stopped") and by_lr.loc[2e-3, "epochs"] >= 1
    assert by_lr.loc[1e-9, "status"] == "early_stopped" and by_lr.loc[1e-9, "epochs"] == 1
    assert_each_epoch_once(trials, epochs)
    last_epoch = epochs.sort_values("epoch").groupby("trial_id").last()  # every epoch is evaluated here
    assert trials.set_index("trial_id")["final/acc_max"].to_dict() == last_epoch["acc_max"].to_dict()
    assert (trials["config/dataset"] == "digits").all() and (trials["config/epochs"] == 2).all()
    assert (trials["cpu_seconds"] == trials["wall_seconds"]).all() and (trials["gpu_seconds"] == 0).all()
    assert (trials["device"] == "cpu").all() and (epochs["device"] == "cpu").all()  # what trained, not what was asked
    assert (trials["wall_seconds"] > 0).all() and (trials["wall_seconds"] < time.time() - started).all()
    assert (epochs["train_images"] > 0).all() and (epochs["world_size"] == 1).all()
    # The run folder of the trial ASHA stopped (its worker killed before it could clean up) does not outlive
    # the worker: the next trial or the driver removes it once its lock is free. Ray may still be ending that
    # worker when the sweep returns (this module's Ray is not the driver's to shut down), so wait for it.
    scratch, deadline = Path(os.environ["TMPDIR"]), time.time() + 60
    while list(scratch.glob(f"{TRIAL_FOLDER_PREFIX}*")) and time.time() < deadline:
        remove_dead_scratch_folders(scratch, TRIAL_FOLDER_PREFIX)
        time.sleep(1)
    assert list(scratch.glob(f"{TRIAL_FOLDER_PREFIX}*")) == []
    # Early-stopped trials' placement groups are freed (by Train's cleaner, through the dashboard).
    deadline = time.time() + 60
    while live_placement_groups() and time.time() < deadline:
        time.sleep(1)
    assert live_placement_groups() == []


def test_a_diverging_trial_ends_at_once_with_its_reason(local_ray, tmp_path):
    """lr 1e20 makes the loss NaN in epoch 1: the trial ends there, errored with the reason, is not retried, and
    the searcher is told it was as bad as can be. (A trial that raises a MixemError in its worker is
    tests/test_trial.py's; a bad value such as an unknown split is refused before Ray starts.)"""
    from ray import tune

    output = tmp_path / "failing"
    before = train_workers()
    code = sweep.main(["--dataset", "digits", "--search", "grid", "--space", *FIXED, "lr=1e-3,1e20",
                       "--max-epochs", "2", "--grace-epochs", "2", "--max-concurrent", "2", "--max-failures", "2",
                       "--output", str(output)])
    assert code == 0
    trials, epochs = read_results(output)
    trials = trials.set_index("config/lr")
    assert trials.loc[1e-3, "status"] == "finished"
    diverged = trials.loc[1e20]
    assert diverged["status"] == "errored" and diverged["epochs"] == 0
    assert diverged["error"].startswith("The loss became nan at epoch 1; lower --lr")
    # No retries: one Train worker per trial, though --max-failures allows two more for each.
    assert len(train_workers() - before) == 2
    # The searcher is told the diverged trial was as bad as can be (the worst value, not a failure it would ignore).
    analysis = tune.ExperimentAnalysis(str(next((output / "ray").iterdir())))
    by_lr = {t.config["lr"]: t for t in analysis.trials}
    assert by_lr[1e20].status == "TERMINATED" and by_lr[1e20].last_result["compinit_z_l2_acc"] == -1.0


def start_cli(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, "the sweep ended before the moment the test waits for"
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def kill_after(driver: subprocess.Popen, condition, delay: float) -> None:
    """SIGKILL ``driver`` ``delay`` seconds after ``condition()`` first holds."""
    try:
        wait_for(condition, driver)
        time.sleep(delay)
        driver.kill()
        driver.wait(30)
    finally:
        driver.kill()


def rows(output: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(output / TRIALS_FILE)
    except (OSError, ValueError):
        return pd.DataFrame(columns=["trial_id", "status"])


def cli(local_ray: str, output: Path, *flags: str) -> list[str]:
    """The sweep's CLI joining this module's Ray, whose storage (on this machine) every node shares."""
    return [sys.executable, str(ROOT / "tune" / "sweep.py"), "--output", str(output), "--address", local_ray,
            "--storage-shared", "--gpus-per-worker", "0", *flags]


def test_killed_sweeps_lose_change_and_rerun_nothing(local_ray, tmp_path):
    """Two trials at once, four in all, ASHA on: SIGKILL the driver a random fraction of a second
    after a trial's row lands, resume on "another machine" from the storage alone, kill again
    after the next row, resume in place. No row is lost, changed or written twice; no trial with a
    row is trained again; every epoch is recorded once. The useless lr comes last, so that whichever
    moments the kills hit, some trial has set ASHA's bar at the rung before it gets there."""
    storage, first, second = tmp_path / "storage", tmp_path / "first", tmp_path / "second"
    grid = ["--dataset", "digits", "--search", "grid", "--space", *FIXED, "lr=2e-3,1e-3,3e-3,1e-9",
            "--max-epochs", "4", "--grace-epochs", "2", "--reduction-factor", "2", "--max-concurrent", "2"]
    rng = random.Random(os.getpid())
    driver = start_cli(cli(local_ray, first, "--storage", str(storage), *grid), tmp_path / "first.log")
    kill_after(driver, lambda: len(rows(first)) >= 1, rng.uniform(0, 1))
    kept, kept_epochs = read_results(first)
    assert len(kept) >= 1
    experiment = next(path for path in storage.iterdir() if path.name.startswith("sweep-"))
    shutil.rmtree(first)  # the old head node is gone: only the storage is left

    driver = start_cli(cli(local_ray, second, "--resume-from", str(experiment)), tmp_path / "second.log")
    kill_after(driver, lambda: len(rows(second)) > len(kept), rng.uniform(0, 1))
    later, _ = read_results(second)

    resumed = subprocess.run(cli(local_ray, second, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials, epochs = read_results(second)
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"finished", "early_stopped"}
    assert trials.set_index("config/lr").loc[1e-9, "status"] == "early_stopped"  # ASHA's rungs survived both kills
    indexed = trials.set_index("trial_id")
    for earlier in (kept, later):  # rows written before each kill are untouched
        earlier = earlier.set_index("trial_id")
        pd.testing.assert_frame_equal(indexed.loc[earlier.index], earlier)
    ended_epochs = kept_epochs[kept_epochs["trial_id"].isin(kept["trial_id"])].reset_index(drop=True)
    after = epochs[epochs["trial_id"].isin(kept["trial_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(after, ended_epochs)  # an ended trial's epochs are not re-trained or rewritten
    assert_each_epoch_once(trials, epochs)


def test_sigterm_stops_like_ctrl_c_and_a_second_driver_is_refused(local_ray, tmp_path, monkeypatch):
    """Also: a user's callback (--callback) survives the resume, and the driver never imports torch,
    with Tune's own CSV and JSON loggers on."""
    storage, output = tmp_path / "storage", tmp_path / "out"
    grid = ["--dataset", "digits", "--search", "grid", "--space", *FIXED, "lr=1e-3,2e-3",
            "--max-epochs", "6", "--grace-epochs", "6", "--max-concurrent", "1",
            "--callback", "tests.callbacks:EpochLog"]
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "callback.log"))
    driver = start_cli(cli(local_ray, output, "--storage", str(storage), *grid), tmp_path / "first.log")
    try:
        epochs_seen = lambda: (output / EPOCHS_FILE).exists() and len(pd.read_parquet(output / EPOCHS_FILE)) >= 2  # noqa: E731
        wait_for(epochs_seen, driver)
        second = subprocess.run(cli(local_ray, output, "--resume"), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and f"Another sweep driver (pid {driver.pid}" in second.stderr
        driver.send_signal(signal.SIGTERM)  # what `ray job stop` sends
        assert driver.wait(120) == 130
    finally:
        driver.kill()
    log = (tmp_path / "first.log").read_text()
    assert "--resume" in log and "Traceback" not in log
    stopped, _ = read_results(output)
    resumed = subprocess.run(cli(local_ray, output, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials, epochs = read_results(output)
    assert len(trials) == 2 and set(trials["status"]) == {"finished"} and len(stopped) < 2
    assert_each_epoch_once(trials, epochs)
    lines = (tmp_path / "callback.log").read_text().splitlines()
    last = {line.split()[1]: int(line.split()[2]) for line in lines if line.startswith("result ")}
    assert last == {trial_id: 6 for trial_id in trials["trial_id"]}  # it saw the resumed run's results too
    assert lines[-1] == "torch False"
    # Tune's loggers wrote each trial's CSV and JSON, and no TensorBoard events.
    logged = {path.name for trial_id in trials["trial_id"] for path in storage.glob(f"sweep-*/{trial_id}/*")}
    assert {"progress.csv", "result.json"} <= logged and not any("tfevents" in name for name in logged)


def test_missing_data_fails_before_any_trial_starts(local_ray, tmp_path, capsys):
    """The pre-flight task loads the dataset where a Train worker would run: one sentence, exit 2."""
    output = tmp_path / "out"
    code = sweep.main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--smoke-test", "--output", str(output)])
    message = capsys.readouterr().err
    assert code == 2 and "error: Before any trial started, on a worker node (" in message
    assert ") cifar10 not found" in message and "--download" in message
    assert not output.exists()


def test_a_trial_trains_with_ddp_over_two_workers(local_ray, tmp_path):
    """Two Train workers per trial: Ray Train's process group (tune/backend.py, gloo) and the DDP
    trainer, the z and pi of both gathered; one global batch, so the same images per epoch."""
    output = tmp_path / "ddp"
    code = sweep.main(["--dataset", "digits", "--search", "grid", "--space", *FIXED, "lr=1e-3", "--max-epochs", "2",
                       "--grace-epochs", "2", "--workers-per-trial", "2", "--output", str(output)])
    assert code == 0
    trials, epochs = read_results(output)
    assert list(trials["status"]) == ["finished"] and (trials["cpu_seconds"] == 2 * trials["wall_seconds"]).all()
    assert (epochs["world_size"] == 2).all() and (epochs["train_images"] == 6 * 256).all()
    assert epochs["compinit_z_l2_acc"].notna().iloc[-1]
