"""tune/results.py: rows, the Parquet schema, atomic files, the copy in storage, and what survives a restart."""

import json
import math
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixem.config import Config
from mixem.errors import MixemError
from mixem.scores import SCORE_KEYS
from tune.results import (
    EPOCHS_FILE,
    SCHEMA_VERSION,
    TRIALS_FILE,
    ResultFiles,
    Storage,
    checkpoint_history,
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
        row.update({key: acc_max / 2 for key in SCORE_KEYS}, acc_max=acc_max, acc_max_variant="kmeans_h_l2")
        row["kmeans_h_raw_nmi"] = 10.0 * epoch  # a metric that differs between epochs
    return row


def test_schema_columns_and_types_are_the_documented_ones():
    trials, epochs = trials_schema(), epochs_schema()
    assert trials.names[:6] == ["trial_id", "preset", "dataset", "status", "error", "device"]
    assert trials.names[-4:] == ["epochs", "wall_seconds", "gpu_seconds", "cpu_seconds"]
    assert trials.field("config/num_components").type == pa.int64()
    assert trials.field("config/w_push").type == pa.float64()
    assert trials.field("config/head").type == pa.string()
    assert trials.field("config/stl10_unlabeled").type == pa.bool_()
    assert trials.field("config/seed").type == pa.int64()
    for key in SCORE_KEYS:
        assert trials.field(f"final/{key}").type == pa.float64()
        assert trials.field(f"best/{key}").type == pa.float64()
        assert epochs.field(key).type == pa.float64()
    assert "final/acc_max" in trials.names and "best/kmeans_h_l2_acc" in trials.names
    assert epochs.names[:4] == ["trial_id", "preset", "epoch", "device"]
    assert trials.field("device").type == pa.string() and epochs.field("device").type == pa.string()
    for name in ("loss_total", "loss_contrastive", "loss_marginal_entropy", "loss_instance", "loss_pull", "loss_push",
                 "lr", "train_images", "world_size", "epoch_seconds", "eval_seconds", "trial_seconds", "acc_max"):
        assert epochs.field(name).type == pa.float64()
    # Nothing the contract does not name: the string variant name stays out of the files.
    assert "acc_max_variant" not in trials.names + epochs.names
    assert "best/val_contrastive" in trials.names and "compinit_z_l2_silhouette" in epochs.names
    assert len(trials.names) == 6 + len(CONFIG) + 2 * len(SCORE_KEYS) + 4
    assert trials.metadata == epochs.metadata == {b"mixem.schema_version": str(SCHEMA_VERSION).encode()}


def row(trial_id, epoch, acc_max, seconds=1.0):
    return epoch_row(trial_id, "", metrics(epoch, acc_max), seconds)


def finished(files, trial_id, status="finished"):
    return trial_row(trial_id, "", CONFIG, files.epochs_of(trial_id), metric="acc_max", status=status, error="",
                     wall_seconds=9.0, cpus=1, gpus=0)


def test_epoch_row_keeps_scores_only_when_evaluated():
    carried = {**metrics(2, None), "acc_max": 0.9}  # the sweep carries the metric forward for Tune
    evaluated = epoch_row("t1", "", carried, 5.0)
    assert evaluated["epoch"] == 2 and evaluated["loss_total"] == 0.5 and evaluated["trial_seconds"] == 5.0
    assert math.isnan(evaluated["acc_max"]) and math.isnan(evaluated["kmeans_h_l2_acc"])
    assert epoch_row("t1", "", metrics(3, 0.8), 6.0)["acc_max"] == 0.8


def test_trial_row_final_is_last_evaluation_and_best_is_where_the_metric_peaked():
    epochs = [epoch_row("t", "mixem", m, 1.0) for m in (metrics(1, 0.5), metrics(2, 0.9), metrics(3, None),
                                                         metrics(4, 0.7), metrics(5, None))]
    best_row = trial_row("t", "mixem", CONFIG, epochs, metric="acc_max", status="finished", error="",
                         wall_seconds=10.0, cpus=2, gpus=1)
    assert best_row["final/acc_max"] == 0.7 and best_row["final/kmeans_h_raw_nmi"] == 40.0
    # best/M: every score read at the epoch with the highest metric (epoch 2), not each one's own maximum.
    assert best_row["best/acc_max"] == 0.9 and best_row["best/kmeans_h_raw_nmi"] == 20.0
    assert best_row["epochs"] == 5 and best_row["preset"] == "mixem" and best_row["dataset"] == "digits"
    assert (best_row["cpu_seconds"], best_row["gpu_seconds"]) == (20.0, 0.0)  # it reserved a GPU, trained on none
    assert best_row["device"] == ""  # these epochs name no device
    # A loss is better lower: its best epoch is where it is lowest (epoch 1 here: 0.5 / 2 is the smallest).
    by_loss = trial_row("t", "", CONFIG, epochs, metric="val_loss", status="finished", error="", wall_seconds=1.0,
                        cpus=1, gpus=0)
    assert by_loss["best/acc_max"] == 0.5
    never = trial_row("u", "", CONFIG, [row("u", 1, None)], metric="acc_max", status="errored", error="boom",
                      wall_seconds=1.0, cpus=1, gpus=0)
    assert math.isnan(never["final/acc_max"]) and math.isnan(never["best/acc_max"]) and never["error"] == "boom"
    with pytest.raises(ValueError):
        trial_row("v", "", CONFIG, [], metric="acc_max", status="stopped", error="", wall_seconds=0.0, cpus=1, gpus=0)


def test_gpu_time_counts_only_the_epochs_that_trained_on_a_gpu():
    devices = ["cuda:0 NVIDIA A10G", "cuda:0 NVIDIA A10G", "cpu", "cuda:1 NVIDIA A10G"]
    epochs = [epoch_row("t", "", {**metrics(n + 1, 0.5), "device": device}, 1.0) for n, device in enumerate(devices)]
    assert [row["device"] for row in epochs] == devices
    mixed = trial_row("t", "", CONFIG, epochs, metric="acc_max", status="finished", error="", wall_seconds=8.0,
                      cpus=2, gpus=2)
    assert mixed["device"] == "cuda:0 NVIDIA A10G; cpu; cuda:1 NVIDIA A10G"  # in order of first use
    assert mixed["gpu_seconds"] == 8.0 * 2 * 3 / 4 and mixed["cpu_seconds"] == 16.0
    on_cpu = trial_row("c", "", CONFIG, [epoch_row("c", "", {**metrics(1, 0.5), "device": "cpu"}, 1.0)],
                       metric="acc_max", status="finished", error="", wall_seconds=5.0, cpus=1, gpus=1)
    assert on_cpu["device"] == "cpu" and on_cpu["gpu_seconds"] == 0.0


def test_a_file_of_another_schema_version_is_refused_and_a_pandas_rewrite_is_read(tmp_path):
    files = ResultFiles.open(tmp_path, "acc_max")
    files.write_empty()
    files.add_epochs([row("a", 1, 0.5), row("a", 2, 0.7)])
    before = read_parquet(tmp_path / EPOCHS_FILE, epochs_schema())
    pd.read_parquet(tmp_path / EPOCHS_FILE).to_parquet(tmp_path / EPOCHS_FILE)  # text becomes large_string
    rows = read_parquet(tmp_path / EPOCHS_FILE, epochs_schema())
    assert len(rows) == 2 and rows[0].keys() == before[0].keys()
    pd.testing.assert_frame_equal(pd.DataFrame(rows), pd.DataFrame(before))
    table = pq.read_table(tmp_path / TRIALS_FILE)
    pq.write_table(table.replace_schema_metadata({b"mixem.schema_version": b"1"}), tmp_path / TRIALS_FILE)
    with pytest.raises(MixemError, match="holds results schema version 1 and this version of mixem writes 2"):
        ResultFiles.open(tmp_path, "acc_max")
    pq.write_table(table.drop_columns(["device"]).replace_schema_metadata(None), tmp_path / TRIALS_FILE)
    with pytest.raises(MixemError, match="does not have the columns this version writes"):
        ResultFiles.open(tmp_path, "acc_max")


def test_a_trial_without_the_metric_still_has_its_final_scores():
    # The SimCLR head has no component init: the sweep's default metric is NaN at every evaluation.
    epochs = [epoch_row("s", "simclr", {**metrics(1, 0.6), "compinit_z_l2_acc": math.nan}, 1.0)]
    simclr = trial_row("s", "simclr", CONFIG, epochs, metric="compinit_z_l2_acc", status="finished", error="",
                       wall_seconds=1.0, cpus=1, gpus=0)
    assert simclr["final/acc_max"] == 0.6 and math.isnan(simclr["best/acc_max"])


def test_a_trial_row_is_written_once_and_never_replaced(tmp_path):
    files = ResultFiles.open(tmp_path, "acc_max")
    files.write_empty()
    assert len(pd.read_parquet(tmp_path / TRIALS_FILE)) == 0  # readers find the schema before any trial ends
    files.add_epochs([row("a", 1, 0.5), row("a", 2, 0.7)])
    assert files.finish(finished(files, "a", "early_stopped"))
    written = (tmp_path / TRIALS_FILE).read_bytes()
    # The same trial again (a resumed driver that ran it once more): refused, nothing written.
    files.add_epochs([row("a", 3, 0.9), row("a", 2, 0.1)])
    assert not files.finish(finished(files, "a"))
    assert (tmp_path / TRIALS_FILE).read_bytes() == written
    epochs = pd.read_parquet(tmp_path / EPOCHS_FILE)
    assert epochs[["epoch", "acc_max"]].values.tolist() == [[1, 0.5], [2, 0.7]]  # an ended trial's epochs stand
    assert sorted(os.listdir(tmp_path)) == [EPOCHS_FILE, TRIALS_FILE]  # no temporary file left


def test_epochs_are_merged_and_survive_a_new_driver(tmp_path):
    files = ResultFiles.open(tmp_path, "acc_max")
    files.add_epochs([row("b", 1, 0.5, seconds=3.0), row("b", 2, 0.6, seconds=6.0)])
    files.add_epochs([row("b", 2, 0.65, seconds=7.0)])  # a retried worker trained epoch 2 again: the newest wins
    files.add_epochs([row("b", 2, 0.1), row("b", 3, 0.8, seconds=9.0)], replace=False)  # recovered rows fill gaps
    again = ResultFiles.open(tmp_path, "acc_max")  # a new driver, after a kill
    assert [(r["epoch"], r["acc_max"]) for r in again.epochs_of("b")] == [(1, 0.5), (2, 0.65), (3, 0.8)]
    assert again.seconds_before("b") == 9.0 and again.seconds_before("nobody") == 0.0
    assert not again.ended("b")


def test_results_are_copied_to_storage_epochs_at_most_every_30_seconds(tmp_path):
    mirror = Storage(str(tmp_path / "storage"))
    files = ResultFiles.open(tmp_path / "out", "acc_max", mirror)
    now = [1000.0]
    files.clock = lambda: now[0]
    files.add_epochs([row("c", 1, 0.5)])
    copied = pd.read_parquet(tmp_path / "storage" / EPOCHS_FILE)
    assert len(copied) == 1
    now[0] += 10
    files.add_epochs([row("c", 2, 0.6)])
    assert len(pd.read_parquet(tmp_path / "storage" / EPOCHS_FILE)) == 1  # throttled
    assert files.finish(finished(files, "c"))  # a trial's end brings the copy up to date, epochs first
    assert len(pd.read_parquet(tmp_path / "storage" / EPOCHS_FILE)) == 2
    assert list(pd.read_parquet(tmp_path / "storage" / TRIALS_FILE)["trial_id"]) == ["c"]
    fresh = tmp_path / "fresh"
    assert mirror.download(TRIALS_FILE, fresh) and not mirror.download("sweep.json", fresh)
    assert ResultFiles.open(fresh, "acc_max").ended("c")


def test_checkpoint_history_takes_the_latest_checkpoint(tmp_path):
    run = tmp_path / "train" / "trial1"
    for folder, epochs in (("checkpoint_2026-01-01_00-00-01", 2), ("checkpoint_2026-01-01_00-00-02", 3)):
        (run / folder).mkdir(parents=True)
        lines = [json.dumps({"epoch": epoch}) for epoch in range(1, epochs + 1)]
        (run / folder / "history.jsonl").write_text("\n".join(lines) + "\n")
    (run / "not-a-checkpoint").mkdir()
    assert [record["epoch"] for record in checkpoint_history(Storage(str(run)))] == [1, 2, 3]
    assert checkpoint_history(Storage(str(tmp_path / "nowhere"))) == []


def test_unreadable_or_foreign_results_are_a_user_error(tmp_path):
    (tmp_path / TRIALS_FILE).write_bytes(b"not parquet at all")
    with pytest.raises(MixemError, match="corrupt"):
        ResultFiles.open(tmp_path, "acc_max")
    pd.DataFrame({"trial_id": ["x"]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(MixemError, match="columns"):
        read_parquet(tmp_path / "other.parquet", trials_schema())
    with pytest.raises(MixemError, match="Cannot open the storage"):
        Storage("nosuchscheme://bucket/prefix")
