"""tune/recording.py: the Tune callback, fed as Tune feeds it, without Ray running."""

import json
from types import SimpleNamespace

import pandas as pd

from tune.recording import RecordResults, error_summary
from tune.results import TRIALS_FILE, ResultFiles
from tune.trial import FROM_CHECKPOINT, TRIAL_ERROR, TrialResources

CONFIG = {"dataset": "digits", "epochs": 3, "w_push_on": False, "w_push": 0.0}


def fake_trial(trial_id, status="RUNNING", error_file=None):
    return SimpleNamespace(trial_id=trial_id, config=CONFIG, last_result={}, status=status, error_file=error_file)


def epoch(number, done=False):
    return {"epoch": number, "evaluated": True, "acc_max": 0.5 + number / 10, "done": done, "loss_total": 1.0,
            "device": "cuda:0 NVIDIA A10G"}


def callback_at(tmp_path, ticks=10):
    callback = RecordResults(tmp_path / "out", TrialResources(2, 1.0, 0.5, "gloo"), "acc_max",
                             train_storage=str(tmp_path / "train"), mirror=str(tmp_path / "mirror"))
    clock = iter(range(0, 10_000, ticks))  # every look at the clock: `ticks` s later
    callback.clock = lambda: next(clock)
    callback.setup()
    return callback


def feed(callback, trial, results):
    callback.on_trial_start(0, [], trial)
    for result in results:
        callback.on_trial_result(0, [], trial, result)
        trial.last_result = result


def test_status_cost_and_config_of_ended_trials(tmp_path):
    callback = callback_at(tmp_path)
    stopped, finished = fake_trial("stopped"), fake_trial("finished")
    feed(callback, stopped, [epoch(1), epoch(2, done=True)])  # ASHA marks the result it stops the trial on
    callback.on_trial_complete(0, [], stopped)
    feed(callback, finished, [epoch(1), epoch(2), epoch(3, done=True)])
    callback.on_trial_complete(0, [], finished)
    trials = pd.read_parquet(tmp_path / "out" / TRIALS_FILE).set_index("trial_id")
    assert trials.loc["stopped", "status"] == "early_stopped" and trials.loc["stopped", "epochs"] == 2
    assert trials.loc["finished", "status"] == "finished"  # ASHA's stop at max_t is not an early stop
    assert trials.loc["finished", "config/w_push"] == 0.0 and trials.loc["finished", "config/backbone"] == "small_cnn"
    # "finished": started at tick 40 (s), three results, ended at the fourth look after: 40 s, on 2 CPUs and 1 GPU.
    assert trials.loc["stopped", "wall_seconds"] == 30 and trials.loc["finished", "wall_seconds"] == 40
    assert (trials.loc["finished", "cpu_seconds"], trials.loc["finished", "gpu_seconds"]) == (80, 40)
    assert trials.loc["finished", "device"] == "cuda:0 NVIDIA A10G"
    # The copy in storage has them too.
    assert set(pd.read_parquet(tmp_path / "mirror" / TRIALS_FILE)["trial_id"]) == {"stopped", "finished"}


def test_errors_come_from_the_worker_or_from_tunes_error_file(tmp_path):
    callback = callback_at(tmp_path)
    diverged = fake_trial("diverged")
    feed(callback, diverged, [epoch(1), {TRIAL_ERROR: "The loss became nan at epoch 2; lower --lr.", "epoch": 1,
                                          "acc_max": -1.0}])
    callback.on_trial_complete(0, [], diverged)  # Tune ended it normally, with the worst value for the searcher
    error_file = tmp_path / "error.txt"
    error_file.write_text("Failure # 1 (occurred at now)\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
                          "ray.exceptions.RayTaskError(DataNotFoundError): ray::train_worker\n"
                          "mixem.errors.DataNotFoundError: CIFAR-10 is not in /data; pass --data-dir.\n")
    failed = fake_trial("failed", error_file=str(error_file))
    feed(callback, failed, [])
    callback.on_trial_error(0, [], failed)
    silent = fake_trial("silent")
    callback.on_trial_error(0, [], silent)
    trials = pd.read_parquet(tmp_path / "out" / TRIALS_FILE).set_index("trial_id")
    assert trials.loc["diverged", "status"] == "errored" and trials.loc["diverged", "epochs"] == 1
    assert trials.loc["diverged", "error"] == "The loss became nan at epoch 2; lower --lr."
    assert trials.loc["failed", "error"] == "CIFAR-10 is not in /data; pass --data-dir."
    assert trials.loc["silent", "error"] == "the trial failed without an error message"
    assert error_summary("Traceback:\n  File 'a'\nValueError: bad value") == "ValueError: bad value"


def test_a_new_driver_never_rewrites_an_ended_trial_and_fills_lost_epochs(tmp_path):
    first = callback_at(tmp_path)
    done = fake_trial("done")
    feed(first, done, [epoch(1), epoch(2, done=True)])
    first.on_trial_complete(0, [], done)
    running = fake_trial("running")
    feed(first, running, [epoch(1)])
    before = (tmp_path / "out" / TRIALS_FILE).read_bytes()
    # The driver dies after epoch 2 of "running" was checkpointed but before its report arrived.
    checkpoint = tmp_path / "train" / "running" / "checkpoint_000001"
    checkpoint.mkdir(parents=True)
    checkpoint.joinpath("history.jsonl").write_text("".join(json.dumps(epoch(e)) + "\n" for e in (1, 2)))

    second = callback_at(tmp_path)  # --resume
    # Tune thinks "done" unfinished and runs it again: it reports its recorded result and ends.
    feed(second, done, [{"epoch": 2, "acc_max": 0.7}])
    second.on_trial_complete(0, [], done)
    assert (tmp_path / "out" / TRIALS_FILE).read_bytes() == before
    feed(second, running, [epoch(3, done=True)])
    second.on_trial_complete(0, [], running)
    files = ResultFiles.open(tmp_path / "out", "acc_max")
    assert [row["epoch"] for row in files.epochs_of("running")] == [1, 2, 3]  # epoch 2 from the checkpoint
    assert [row["epoch"] for row in files.epochs_of("done")] == [1, 2]
    assert files.trials["running"]["status"] == "finished"


def test_a_trial_tune_ended_without_a_row_gets_one_at_the_first_step(tmp_path):
    first = callback_at(tmp_path)
    lost = fake_trial("lost")
    feed(first, lost, [epoch(1), epoch(2)])  # the driver died before on_trial_complete
    second = callback_at(tmp_path)
    lost.status = "TERMINATED"
    second.on_step_begin(0, [lost, fake_trial("other")])
    trials = pd.read_parquet(tmp_path / "out" / TRIALS_FILE)
    assert trials[["trial_id", "status", "epochs"]].values.tolist() == [["lost", "early_stopped", 2]]


def test_a_result_repeated_from_a_complete_checkpoint_records_the_checkpoints_epochs(tmp_path):
    """The driver died after a trial's last checkpoint (every epoch) but before the trial ended, and
    before the reports of epochs 2 and 3 arrived. Resumed, the worker has nothing left to train and
    repeats the final value for Tune: that result is not an epoch row; the trial's epochs come from
    the checkpoint, and it is finished, not stopped early."""
    first = callback_at(tmp_path)
    trial = fake_trial("complete")
    feed(first, trial, [epoch(1)])
    checkpoint = tmp_path / "train" / "complete" / "checkpoint_000002"
    checkpoint.mkdir(parents=True)
    checkpoint.joinpath("history.jsonl").write_text("".join(json.dumps(epoch(e)) + "\n" for e in (1, 2, 3)))
    (recorded,) = ResultFiles.open(tmp_path / "out", "acc_max").epochs_of("complete")

    second = callback_at(tmp_path)
    feed(second, trial, [{"epoch": 3, "acc_max": 0.8, FROM_CHECKPOINT: True, "done": True}])
    second.on_trial_complete(0, [], trial)
    files = ResultFiles.open(tmp_path / "out", "acc_max")
    assert files.epochs_of("complete")[0]["trial_seconds"] == recorded["trial_seconds"] == 10  # as first recorded
    assert [row["epoch"] for row in files.epochs_of("complete")] == [1, 2, 3]
    assert files.epochs_of("complete")[-1]["acc_max"] == epoch(3)["acc_max"]  # the checkpoint's row, not the repeat
    assert files.trials["complete"]["status"] == "finished" and files.trials["complete"]["epochs"] == 3
