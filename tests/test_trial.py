"""tune/trial.py's worker body, with Ray Train's two calls replaced: what it reports to Tune."""

from pathlib import Path

import pytest
import ray.train
import torch

from mixem.config import Config
from mixem.train import train
from tune.trial import FROM_CHECKPOINT, TRIAL_ERROR, train_worker

METRIC = "compinit_z_l2_acc"
ROOT = Path(__file__).resolve().parents[1]


def test_a_worker_resumed_from_a_complete_checkpoint_reports_the_final_value(tmp_path, monkeypatch):
    """A Train run whose last checkpoint holds every epoch (its driver died before the trial ended)
    has nothing left to train; Tune still needs the metric in a result, or it stops the whole sweep.
    The worker repeats the final value once, marked as coming from the checkpoint."""
    config = Config.for_dataset("digits", {"epochs": 1, "kmeans_n_init": 2})
    final = train(config, tmp_path / "run", progress=False)
    reports = []
    monkeypatch.chdir(tmp_path)  # the worker moves to the temp folder; pytest's folder is restored after
    monkeypatch.setattr(ray.train, "get_checkpoint",
                        lambda: ray.train.Checkpoint.from_directory(str(tmp_path / "run" / "checkpoint")))
    monkeypatch.setattr(ray.train, "report", lambda metrics, checkpoint=None: reports.append((metrics, checkpoint)))
    error = train_worker({"config": config, "data_dir": None, "metric": METRIC, "checkpoint_every": 0,
                          "compile": False, "gpus": 0})
    assert error is None
    assert reports == [({"epoch": 1, METRIC: final[METRIC], FROM_CHECKPOINT: True}, None)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a usable GPU")
def test_a_worker_that_reserved_a_gpu_without_cuda_fails_in_one_sentence(monkeypatch):
    """A node type that advertises a GPU its torch cannot use: the trial fails at once with the reason,
    before any data is loaded or any epoch trained on the CPU."""
    reports = []
    monkeypatch.chdir(ROOT)  # the worker moves to the temp folder; pytest's folder is restored after
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)
    monkeypatch.setattr(ray.train, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    config = Config.for_dataset("digits", {"epochs": 1})
    error = train_worker({"config": config, "data_dir": "/nonexistent", "metric": METRIC,
                          "checkpoint_every": 0, "compile": False, "gpus": 1})
    assert error.startswith("This trial's workers each reserve 1 GPU, but on node ") and "--gpus-per-worker 0" in error
    assert error.count(". ") == 0 and error.endswith(".")  # one sentence
    assert [set(report) for report in reports] == [{TRIAL_ERROR, METRIC}] and reports[0][TRIAL_ERROR] == error
