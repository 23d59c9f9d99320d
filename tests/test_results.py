"""tune/results.py: rows, the Parquet schema, atomic files, and what survives a restart."""

import math
import os

import pandas as pd
import pyarrow as pa
import pytest

from mixem.config import Config
from mixem.errors import MixemError
from tune.results import (
    EPOCHS_FILE,
    RUNNING_FILE,
    SCORES,
    TRIALS_FILE,
    ResultStore,
    epoch_row,
    epochs_schema,
    read_parquet,
    trial_row,
    trials_schema,
)

CONFIG = Config.for_dataset("digits").to_flat()
NAN = float("nan")


def metrics(epoch: int, acc_max: float | None) -> dict:
    """A per-epoch metrics dict as mixem.train reports it; acc_max None: not evaluated."""
    row = {"epoch": epoch, "loss_total": 1.0 / epoch, "loss_contrastive": 2.0, "loss_marginal_entropy": 2.3,
           "loss_instance": 0.5, "loss_pull": 0.1, "loss_push": -0.2, "lr": 1e-3, "epoch_seconds": 1.5,
           "eval_seconds": 0.0, "evaluated": acc_max is not None}
    if acc_max is not None:
        row.update({key: acc_max / 2 for key in SCORES}, acc_max=acc_max, acc_max_variant="kmeans_h_l2")
        row["kmeans_h_raw_nmi"] = 10.0 * epoch  # a metric that differs between epochs
    return row


def test_schema_columns_and_types_are_the_documented_ones():
    trials, epochs = trials_schema(), epochs_schema()
    assert trials.names[:5] == ["trial_id", "preset", "dataset", "status", "error"]
    assert trials.names[-4:] == ["epochs", "wall_seconds", "gpu_seconds", "cpu_seconds"]
    assert trials.field("config/num_components").type == pa.int64()
    assert trials.field("config/w_push").type == pa.float64()
    assert trials.field("config/head").type == pa.string()
    assert trials.field("config/stl10_unlabeled").type == pa.bool_()
    assert trials.field("config/seed").type == pa.int64()
    for key in SCORES:
        assert trials.field(f"final/{key}").type == pa.float64()
        assert trials.field(f"best/{key}").type == pa.float64()
        assert epochs.field(key).type == pa.float64()
    assert "final/acc_max" in trials.names and "best/kmeans_h_l2_acc" in trials.names
    assert epochs.names[:3] == ["trial_id", "preset", "epoch"]
    for name in ("loss_total", "loss_contrastive", "loss_marginal_entropy", "loss_instance", "loss_pull", "loss_push",
                 "lr", "epoch_seconds", "eval_seconds", "acc_max"):
        assert epochs.field(name).type == pa.float64()
    # Nothing the contract does not name: the string variant name stays out of the files.
    assert "acc_max_variant" not in trials.names + epochs.names
    assert "best/val_contrastive" in trials.names and "compinit_z_l2_silhouette" in epochs.names
    assert len(trials.names) == 5 + len(CONFIG) + 2 * len(SCORES) + 4


def test_epoch_row_keeps_metrics_only_when_evaluated():
    carried = {**metrics(2, None), "acc_max": 0.9}  # the sweep carries acc_max forward for Tune
    row = epoch_row("t1", "", carried)
    assert row["epoch"] == 2 and row["loss_total"] == 0.5
    assert math.isnan(row["acc_max"]) and math.isnan(row["kmeans_h_l2_acc"])
    assert epoch_row("t1", "", metrics(3, 0.8))["acc_max"] == 0.8


def test_trial_row_final_is_last_evaluation_and_best_is_the_peak_epoch():
    epochs = [epoch_row("t", "mixem", m) for m in (metrics(1, 0.5), metrics(2, 0.9), metrics(3, None),
                                                    metrics(4, 0.7), metrics(5, None))]
    row = trial_row("t", "mixem", CONFIG, epochs, metric="acc_max", status="finished", wall_seconds=10.0, cpus=2,
                    gpus=1)
    assert row["final/acc_max"] == 0.7 and row["final/kmeans_h_raw_nmi"] == 40.0
    # best/M: every metric read at the epoch with the highest acc_max (epoch 2), not its own maximum.
    assert row["best/acc_max"] == 0.9 and row["best/kmeans_h_raw_nmi"] == 20.0
    assert row["epochs"] == 5 and row["preset"] == "mixem" and row["dataset"] == "digits"
    assert (row["cpu_seconds"], row["gpu_seconds"]) == (20.0, 10.0)
    never = trial_row("u", "", CONFIG, [epoch_row("u", "", metrics(1, None))], metric="acc_max",
                      status="errored", error="boom",
                      wall_seconds=1.0, cpus=1, gpus=0)
    assert math.isnan(never["final/acc_max"]) and math.isnan(never["best/acc_max"]) and never["error"] == "boom"
    with pytest.raises(ValueError):
        trial_row("v", "", CONFIG, [], metric="acc_max", status="stopped", wall_seconds=0.0, cpus=1, gpus=0)


def test_store_writes_both_files_atomically_and_resumes(tmp_path):
    store = ResultStore.open(tmp_path, "acc_max")
    store.write_empty()
    assert len(pd.read_parquet(tmp_path / TRIALS_FILE)) == 0  # readers find the schema before any trial ends
    store.add_epoch("a", "", metrics(1, 0.5), wall_seconds=3.0)
    store.add_epoch("b", "", metrics(1, 0.6), wall_seconds=3.0)
    store.add_epoch("a", "", metrics(2, 0.7), wall_seconds=6.0)
    store.add_epoch("a", "", metrics(2, 0.75), wall_seconds=7.0)  # a retried trial repeats epoch 2
    store.finish("a", "", CONFIG, status="finished", wall_seconds=7.5, cpus=1, gpus=0)
    assert sorted(os.listdir(tmp_path)) == [RUNNING_FILE, EPOCHS_FILE, TRIALS_FILE]  # no temporary file left

    # A new driver (after a kill) sees the finished trial and the epochs of the one still running.
    again = ResultStore.open(tmp_path, "acc_max")
    assert again.finished_ids == {"a"}
    assert again.wall_seconds_before("b") == 3.0
    again.add_epoch("b", "", metrics(2, 0.8), wall_seconds=9.0)
    again.finish("b", "", CONFIG, status="early_stopped", wall_seconds=9.0, cpus=1, gpus=0)
    trials = pd.read_parquet(tmp_path / TRIALS_FILE)
    epochs = pd.read_parquet(tmp_path / EPOCHS_FILE)
    assert list(trials["trial_id"]) == ["a", "b"] and list(trials["status"]) == ["finished", "early_stopped"]
    assert epochs[["trial_id", "epoch"]].values.tolist() == [["a", 1], ["a", 2], ["b", 1], ["b", 2]]
    assert epochs.loc[1, "acc_max"] == 0.75
    assert trials.loc[1, "best/acc_max"] == 0.8 and trials.loc[1, "epochs"] == 2
    assert trials["epochs"].dtype == "int64" and trials["final/acc_max"].dtype == "float64"


def test_unreadable_or_foreign_results_are_a_user_error(tmp_path):
    (tmp_path / TRIALS_FILE).write_bytes(b"not parquet at all")
    with pytest.raises(MixemError, match="corrupt"):
        ResultStore.open(tmp_path, "acc_max")
    pd.DataFrame({"trial_id": ["x"]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(MixemError, match="columns"):
        read_parquet(tmp_path / "other.parquet", trials_schema())
