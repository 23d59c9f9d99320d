"""mixem.staging: a dataset kept at a URI is copied to the node's disk once, whole, by one process at a time.

The URI here is file:// (pyarrow's local file system): the same code path as s3:// and gs://, whose
file systems pyarrow provides, without a bucket."""

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixem.data import load_dataset
from mixem.errors import DataNotFoundError, MixemError
from mixem.staging import STAGE_DIR_ENV, STAGED_MARK, stage_dataset
from tests.test_data import write_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bucket(tmp_path) -> str:
    write_fashion_mnist(tmp_path / "bucket" / "datasets", n_train=20, n_test=10)
    return f"file://{tmp_path / 'bucket' / 'datasets'}"


def test_a_dataset_at_a_uri_is_staged_once_and_loads_as_from_a_folder(bucket, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv(STAGE_DIR_ENV, str(tmp_path / "stage"))
    staged = load_dataset("fashion-mnist", bucket)
    direct = load_dataset("fashion-mnist", tmp_path / "bucket" / "datasets")
    for split in ("train", "test"):
        assert all(torch.equal(a, b) for a, b in zip(staged.splits[split], direct.splits[split], strict=True))
    assert capfd.readouterr().err.count("staging ") == 1
    load_dataset("fashion-mnist", bucket)  # the second run on this node reads the local copy
    assert "staging " not in capfd.readouterr().err
    local = stage_dataset(bucket, "fashion-mnist", tmp_path / "stage")
    assert (local / f"{STAGED_MARK}-fashion-mnist").is_file() and (local / "FashionMNIST" / "raw").is_dir()
    assert stage_dataset(bucket, "digits", tmp_path / "stage") == local  # nothing to copy: it ships in sklearn


def _stage(args) -> str:
    uri, root = args
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        stage_dataset(uri, "fashion-mnist", Path(root))
    return err.getvalue()


def test_trials_starting_together_on_a_node_wait_for_one_copy(bucket, tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        logs = pool.map(_stage, [(bucket, str(tmp_path / "stage"))] * 4)
    assert sum(log.count("staging ") for log in logs) == 1
    (local,) = [path for path in (tmp_path / "stage").iterdir() if path.is_dir()]
    assert sorted(p.name for p in local.iterdir() if p.name.startswith(".partial")) == []


def test_a_copy_cut_short_is_redone_not_read(bucket, tmp_path):
    root = tmp_path / "stage"
    local = stage_dataset(bucket, "fashion-mnist", root)
    # A process killed mid-copy leaves its partial folder and no mark; one killed between the rename and
    # the mark leaves a whole folder without the mark.
    (local / f"{STAGED_MARK}-fashion-mnist").unlink()
    (local / ".partial-99999").mkdir()
    (local / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"truncated")
    stage_dataset(bucket, "fashion-mnist", root)
    assert not (local / ".partial-99999").exists()
    assert len(load_dataset("fashion-mnist", local).splits["train"][0]) == 20


def test_missing_or_unreachable_data_at_a_uri_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv(STAGE_DIR_ENV, str(tmp_path / "stage"))
    with pytest.raises(DataNotFoundError, match=r"cifar-10-batches-py holds no files; upload the dataset there once"):
        load_dataset("cifar10", f"file://{tmp_path}/empty")
    with pytest.raises(MixemError, match="--download fetches cifar10 from its original hosts into a local folder"):
        load_dataset("cifar10", f"file://{tmp_path}/empty", download=True)
    monkeypatch.setenv(STAGE_DIR_ENV, "/proc/no-room-here")
    write_fashion_mnist(tmp_path / "b", n_train=2, n_test=2)
    with pytest.raises(MixemError, match=f"set {STAGE_DIR_ENV} to a writable folder"):
        load_dataset("fashion-mnist", f"file://{tmp_path}/b")


def test_the_trainer_takes_a_uri_for_data_dir(bucket, tmp_path):
    env = {**os.environ, STAGE_DIR_ENV: str(tmp_path / "stage")}
    done = subprocess.run([sys.executable, "-m", "mixem.train", "--dataset", "fashion-mnist", "--data-dir", bucket,
                           "--epochs", "1", "--batch-size", "8", "--kmeans-n-init", "1", "--out", str(tmp_path / "run"),
                           "--no-progress"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "staging file://" in done.stderr and (tmp_path / "run" / "metrics.json").is_file()
