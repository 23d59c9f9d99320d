"""The benchmark suite and the GPU check run from a clean checkout (timings are not asserted:
the machine is shared; benchmarks/RESULTS.md holds measured figures)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_on_the_cpu_path(tmp_path):
    """The script a GPU session runs, on the CPU: the CUDA tests skip, then the quick benchmark suite
    (`python -m benchmarks --quick`), a 2-trial sweep and a checkpoint resumed on the CPU."""
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env={**os.environ, "OUT": str(tmp_path)})
    log = (tmp_path / "gpu_check.log").read_text()
    assert done.returncode == 0, log[-4000:]
    for expected in ("MIX'EM / SimCLR time, ResNet-18 32x32", "augment() / PIL, 32x32", "interim (3 restarts) / epoch",
                     "Ray overhead per trial", "2 trials (2 finished)", "== done"):
        assert expected in log, expected
    figures = [line for line in log.splitlines() if line.startswith(("train step:", "augmentation:", "evaluation:"))]
    assert len(figures) == 12 + 10 + 3 and all("python benchmarks/" in line for line in figures)


def test_the_trial_timeline_splits_processes_into_trials():
    """benchmarks/trial_timeline.py: Ray's worker rows become one table per trial, in seconds from
    the trial actor's start; processes before the first trial and workers that ran no actor are
    left out."""
    from benchmarks.trial_timeline import by_trial, format_trial, processes

    def worker(pid, launch, ready, end, kind="WORKER"):
        return {"pid": pid, "worker_type": kind, "worker_launch_time_ms": launch * 1000,
                "start_time_ms": ready * 1000, "end_time_ms": end * 1000 if end else 0}

    workers = [worker(1, 100, 101, 110), worker(2, 120, 121, 140), worker(3, 122, 123.5, 140),
               worker(4, 125, 126, 141), worker(5, 141, 142, None), worker(6, 121, 121.5, None),
               worker(7, 90, 91, None, kind="DRIVER")]
    actors = {1: "_AutoscalingCoordinatorActor", 2: "ImplicitFunc", 3: "TrainController", 4: "RayTrainWorker",
              5: "ImplicitFunc", 7: "ImplicitFunc"}  # 6 ran no actor (a task's worker); 7 is not a worker
    trials = by_trial(processes(workers, actors))
    assert [[row["pid"] for row in trial] for trial in trials] == [[2, 3, 4], [5]]
    table = format_trial(0, trials[0], 4.5).splitlines()
    assert table[0] == "trial 0: 21.0 s from its trial actor's start to its last process's end, 4.5 s of it " \
                       "training and evaluating"
    assert table[3].split() == ["TrainController", "2.00", "3.50", "20.00"]
    assert format_trial(1, trials[1], None).splitlines()[-1].split() == ["ImplicitFunc", "0.00", "1.00", "alive"]


def test_eval_cost_without_the_data_says_where_the_files_go(tmp_path):
    """A dataset whose files are missing: one sentence naming the folder and the fix, exit 2, and no
    training first."""
    done = subprocess.run([sys.executable, "benchmarks/eval_cost.py", "--dataset", "cifar10", "--data-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"{tmp_path}/cifar-10-batches-py" in done.stderr and "--download" in done.stderr
