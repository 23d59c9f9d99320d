"""tune/sweep.py end to end on a local Ray (CPU, digits, tiny configs); tune/ablate.py runs in
test_sweep_cluster.py.

One Ray per module, with its own temp dir and HOME (Ray writes ~/.ray); the sweeps run in this
process through ``main`` except the killed-and-resumed one, which runs as the CLI in
subprocesses that join this module's Ray.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest

from mixem.errors import MixemError
from tune import sweep
from tune.results import EPOCHS_FILE, RUNNING_FILE, TRIALS_FILE, epochs_schema, trials_schema
from tune.space import Choice, LogUniform

ROOT = Path(__file__).resolve().parents[1]
# Every searched weight fixed: the trials of a test differ only where the test says so.
FIXED = ["num_components=10", "w_entropy=2", "w_instance=0.1", "w_pull=0.1", "w_push=0.05", "temperature=0.5",
         "kmeans_n_init=2"]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    import ray

    # ray.init turns token authentication on by setting RAY_AUTH_MODE in this process, with the
    # token under HOME: both are undone at the end, so the next module's Ray starts clean.
    saved = {name: os.environ.get(name) for name in ("HOME", "PYTHONPATH", "RAY_AUTH_MODE")}
    os.environ.pop("RAY_AUTH_MODE", None)
    os.environ["HOME"] = str(tmp_path_factory.mktemp("home"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    # The sweep's own way to start Ray (dashboard, environment); unix socket paths must stay short,
    # so the temp dir is a folder directly under /tmp.
    temp_dir = tempfile.mkdtemp(dir="/tmp", prefix="mxs-")
    sweep.start_ray(None, num_cpus=2, _temp_dir=temp_dir)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def read_results(output: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials, epochs = pd.read_parquet(output / TRIALS_FILE), pd.read_parquet(output / EPOCHS_FILE)
    assert list(trials.columns) == trials_schema().names
    assert list(epochs.columns) == epochs_schema().names
    return trials, epochs


def live_placement_groups() -> list:
    import ray

    return [pg for pg in ray.util.placement_group_table().values() if pg["state"] != "REMOVED"]


# ---------------------------------------------------------------------------------------------
# Without Ray: the command line and the search space


def test_space_arguments_fix_narrow_and_choose():
    fixed, space = sweep.resolve_space(
        "digits", sweep.read_space_args(["w_push=0", "lr=1e-3:1e-2", "num_components=10,20", "w_pull=0,0.01:0.1",
                                         "weight_decay=1e-6"]), {"dataset": "digits", "epochs": 2})
    assert fixed["w_push"] == 0 and fixed["weight_decay"] == 1e-6 and "w_push" not in space
    assert space["lr"] == LogUniform(1e-3, 1e-2, grid=space["lr"].grid, or_zero=False)
    assert space["num_components"] == Choice((10, 20))
    assert space["w_pull"].or_zero and (space["w_pull"].low, space["w_pull"].high) == (0.01, 0.1)
    assert {"w_entropy", "w_instance", "temperature"} <= set(space)  # untouched: searched as tune/space.py says


@pytest.mark.parametrize("tokens, message", [
    (["bogus=1"], "unknown field 'bogus'"),
    (["w_push=-0.1"], ">= 0"),
    (["w_pull=-1:1"], "0 < LO < HI"),
    (["num_components=5:50"], "not a real number"),
    (["epochs=3"], "--max-epochs"),
])
def test_bad_space_is_one_sentence(tokens, message):
    with pytest.raises(MixemError, match=message):
        sweep.resolve_space("digits", sweep.read_space_args(tokens), {"dataset": "digits"})


def test_optuna_space_draws_zero_or_a_log_uniform_value():
    space = {"w_push": LogUniform(0.005, 0.5, grid=(0.0,), or_zero=True), "num_components": Choice((10, 20))}
    define = sweep.OptunaSpace(space, {"dataset": "digits", "epochs": 2})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(30):
        trial = study.ask()
        constants = define(trial)
        values = {**trial.params, **constants}
        drawn.append(values["w_push"])
        assert constants["dataset"] == "digits" and values["num_components"] in (10, 20)
        study.tell(trial, 0.0)
    assert 0.0 in drawn and any(0.005 <= w <= 0.5 for w in drawn)
    assert all(w == 0.0 or 0.005 <= w <= 0.5 for w in drawn)


def test_trial_config_applies_the_ablation_preset_last():
    config = sweep.trial_config_to_config({"dataset": "digits", "preset": "simclr", "w_push": 0.3, "w_push_on": True})
    assert config.model.head == "simclr" and config.loss.w_push == 0.0
    assert config.model.backbone == "small_cnn"  # the dataset preset is underneath


def test_results_callback_records_status_and_error(tmp_path):
    """The driver-side callback, fed as Tune feeds it: ASHA's stop marks the result ``done``."""
    callback = sweep.ResultsCallback(tmp_path, sweep.TrialResources(2, 1.0, 0.5, "gloo"), "acc_max")
    ticks = iter(range(0, 1000, 10))  # every look at the clock: 10 s later
    callback.clock = lambda: next(ticks)
    callback.setup()
    config = {"dataset": "digits", "epochs": 3, "w_push_on": False, "w_push": 0.0}

    def trial(trial_id, error=None):
        return SimpleNamespace(trial_id=trial_id, config=config, last_result={}, get_error=lambda: error)

    def epoch(number, done=False):
        return {"epoch": number, "evaluated": True, "acc_max": 0.5 + number / 10, "done": done, "loss_total": 1.0}

    stopped, finished = trial("stopped"), trial("finished")
    for t, results in ((stopped, [epoch(1), epoch(2, done=True)]), (finished, [epoch(1), epoch(2), epoch(3, True)])):
        callback.on_trial_start(0, [], t)
        for result in results:
            callback.on_trial_result(0, [], t, result)
            t.last_result = result
        callback.on_trial_complete(0, [], t)
    failed = trial("failed", error="Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                   "ray.exceptions.RayTaskError(DataNotFoundError): ray::train_worker\n"
                   "mixem.errors.DataNotFoundError: CIFAR-10 is not in /data; pass --data-dir.")
    callback.on_trial_error(0, [], failed)
    trials = pd.read_parquet(tmp_path / TRIALS_FILE).set_index("trial_id")
    assert trials.loc["stopped", "status"] == "early_stopped" and trials.loc["stopped", "epochs"] == 2
    assert trials.loc["finished", "status"] == "finished"  # ASHA's stop at max_t is not an early stop
    assert trials.loc["failed", "status"] == "errored"
    assert trials.loc["failed", "error"] == "CIFAR-10 is not in /data; pass --data-dir."
    assert trials.loc["finished", "config/w_push"] == 0.0 and trials.loc["finished", "config/backbone"] == "small_cnn"
    # "finished": started at tick 0 (s), three results, ended at the fifth look: 40 s, on 2 CPUs and 1 GPU.
    assert trials.loc["stopped", "wall_seconds"] == 30
    assert trials.loc["finished", "wall_seconds"] == 40
    assert (trials.loc["finished", "cpu_seconds"], trials.loc["finished", "gpu_seconds"]) == (80, 40)
    assert sweep.error_summary("Traceback:\n  File 'a'\nValueError: bad value") == "ValueError: bad value"


def test_bad_input_exits_2_and_keeps_finished_work(tmp_path, capsys):
    assert sweep.main(["--dataset", "mnist", "--output", str(tmp_path / "a")]) == 2
    assert "Unknown dataset 'mnist'" in capsys.readouterr().err
    assert sweep.main(["--dataset", "digits", "--space", "w_entropy=-2", "--output", str(tmp_path / "b")]) == 2
    assert "--w-entropy must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # A sweep folder whose results were damaged: --resume refuses and touches nothing.
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / sweep.SETTINGS_FILE).write_text(json.dumps(
        {"kind": "sweep", "name": "x", "storage": str(damaged / "ray"),
         "args": {"dataset": "digits", "space": [], "max_epochs": 2, "grace_epochs": 1, "seed": 0,
                  "smoke_test": False, "metric": "acc_max", "search": "optuna", "num_samples": 2,
                  "reduction_factor": 3}}))
    (damaged / TRIALS_FILE).write_bytes(b"PAR1 truncated")
    assert sweep.main(["--output", str(damaged), "--resume"]) == 2
    assert "is corrupt" in capsys.readouterr().err
    assert (damaged / TRIALS_FILE).read_bytes() == b"PAR1 truncated"
    # An --address where no Ray answers fails at once (Ray itself would retry forever).
    with pytest.raises(MixemError, match="No Ray cluster answers"):
        sweep.dashboard_url("127.0.0.1:1")
    # Starting a new sweep over an existing one is refused too.
    assert sweep.main(["--dataset", "digits", "--output", str(damaged)]) == 2
    assert "already holds a sweep" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# With Ray


def test_sweep_writes_one_row_per_trial_and_asha_stops_the_weak(local_ray, tmp_path):
    """A grid of a good and a useless lr; every other searched field fixed."""
    output = tmp_path / "sweep"
    started = time.time()
    code = sweep.main(["--dataset", "digits", "--search", "grid", "--space", *FIXED, "lr=1e-3,1e-9",
                       "--max-epochs", "2", "--grace-epochs", "1", "--reduction-factor", "2", "--max-concurrent", "1",
                       "--output", str(output)])
    assert code == 0
    trials, epochs = read_results(output)
    assert len(trials) == 2 and trials["trial_id"].is_unique and (trials["error"] == "").all()
    # One at a time, in grid order: lr=1e-3 sets the bar at ASHA's rung (epoch 1), lr=1e-9 falls under it.
    by_lr = trials.set_index("config/lr")
    assert by_lr.loc[1e-3, "status"] == "finished" and by_lr.loc[1e-3, "epochs"] == 2
    assert by_lr.loc[1e-9, "status"] == "early_stopped" and by_lr.loc[1e-9, "epochs"] == 1
    # Every trial's epochs are in epochs.parquet once each, and the trial row agrees with them.
    per_trial = epochs.groupby("trial_id")["epoch"].apply(list).to_dict()
    assert per_trial == {row.trial_id: list(range(1, row.epochs + 1)) for row in trials.itertuples()}
    last_epoch = epochs.sort_values("epoch").groupby("trial_id").last()  # every epoch is evaluated here
    assert trials.set_index("trial_id")["final/acc_max"].to_dict() == last_epoch["acc_max"].to_dict()
    assert (trials["config/dataset"] == "digits").all() and (trials["config/epochs"] == 2).all()
    assert (trials["cpu_seconds"] == trials["wall_seconds"]).all() and (trials["gpu_seconds"] == 0).all()
    assert (trials["wall_seconds"] > 0).all() and (trials["wall_seconds"] < time.time() - started).all()
    assert json.loads((output / RUNNING_FILE).read_text()) == {}
    # Early-stopped trials' placement groups are freed (by Train's cleaner, through the dashboard).
    deadline = time.time() + 60
    while live_placement_groups() and time.time() < deadline:
        time.sleep(1)
    assert live_placement_groups() == []


def test_killed_sweep_resumes_keeping_finished_trials(local_ray, tmp_path):
    """The CLI, joined to this module's Ray, is SIGKILLed once a trial has finished and the next has
    reported an epoch; --resume finishes the second from its checkpoint and keeps the first."""
    output = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "tune" / "sweep.py"), "--output", str(output), "--address", local_ray]
    first = subprocess.Popen(command + ["--dataset", "digits", "--smoke-test", "--num-samples", "2",
                                        "--max-epochs", "3", "--grace-epochs", "3", "--max-concurrent", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None:
            ended, running = set(), set()
            if (output / TRIALS_FILE).exists() and (output / RUNNING_FILE).exists():
                ended = set(pd.read_parquet(output / TRIALS_FILE)["trial_id"])
                running = set(json.loads((output / RUNNING_FILE).read_text()))
            if len(ended) == 1 and running - ended:  # the second trial has reported an epoch
                break
            time.sleep(0.5)
        assert first.poll() is None, "the sweep ended before it could be killed"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
    before, _ = read_results(output)
    assert len(before) == 1
    interrupted = next(iter(json.loads((output / RUNNING_FILE).read_text())))

    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials, epochs = read_results(output)
    assert len(trials) == 2 and set(trials["status"]) == {"finished"}
    kept = trials.set_index("trial_id").loc[before.loc[0, "trial_id"]]
    assert kept.equals(before.set_index("trial_id").iloc[0])  # the finished trial's row, untouched
    assert sorted(epochs[epochs["trial_id"] == interrupted]["epoch"]) == [1, 2, 3]
    # The interrupted trial continued from its checkpoint: the resumed run trained no epoch 1.
    assert "epoch 3:" in resumed.stdout + resumed.stderr
    assert "epoch 1:" not in resumed.stdout + resumed.stderr
