"""The trainer end to end on digits: CLI, output files, resume, and the errors a user can cause."""

import json
import subprocess
import sys

import pytest
import torch

from mixem.config import Config
from mixem.errors import MixemError
from mixem.evaluate import METRIC_KEYS
from mixem.train import lr_factor, main, train

TINY = ["--epochs", "2", "--batch-size", "128", "--kmeans-n-init", "2", "--hidden-dim", "32", "--eval-every", "1"]


def tiny_config(**overrides) -> Config:
    flat = dict(epochs=2, batch_size=128, kmeans_n_init=2, hidden_dim=32, eval_every=1)
    return Config.for_dataset("digits", {**flat, **overrides})


def read_history(run):
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def test_cli_run_writes_config_metrics_history_and_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "mixem.train", "--dataset", "digits", "--out", str(run), *TINY],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "digits" and config["epochs"] == 2 and config["backbone"] == "small_cnn"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics) and metrics["epoch"] == 2
    assert all(0 <= metrics[k] <= 1 for k in METRIC_KEYS if k.endswith(("_acc", "_nmi")))
    # Even two epochs must beat chance (0.1) by far on digits: the representation learned something.
    assert metrics["acc_max"] > 0.5
    history = read_history(run)
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(row["evaluated"] and "loss_contrastive" in row for row in history)
    assert (run / "checkpoint" / "checkpoint.pt").is_file()
    assert "kmeans_h_raw" in result.stdout  # the final table


def test_resume_continues_from_the_saved_epoch(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(epochs=1), run)
    reported = []
    train(tiny_config(epochs=3), run, resume_from=run, report=lambda metrics, ckpt: reported.append(metrics["epoch"]))
    assert reported == [2, 3]  # epoch 1 was not trained again
    assert [row["epoch"] for row in read_history(run)] == [1, 2, 3]
    assert torch.load(run / "checkpoint" / "checkpoint.pt", weights_only=False)["epoch"] == 3


class _Crash(Exception):
    pass


def _crash(metrics, checkpoint_dir):
    raise _Crash  # a worker dying right after the first epoch's checkpoint


def test_resume_matches_an_uninterrupted_run(tmp_path):
    straight = train(tiny_config(eval_every=0), tmp_path / "a")
    with pytest.raises(_Crash):
        train(tiny_config(eval_every=0), tmp_path / "b", report=_crash)
    resumed = train(tiny_config(eval_every=0), tmp_path / "b", resume_from=tmp_path / "b")
    assert resumed["acc_max"] == pytest.approx(straight["acc_max"], abs=1e-9)
    assert read_history(tmp_path / "b")[-1]["loss_total"] == pytest.approx(
        read_history(tmp_path / "a")[-1]["loss_total"]
    )


def test_report_gets_a_checkpoint_dir_every_epoch(tmp_path):
    seen = []
    train(
        tiny_config(),
        tmp_path / "run",
        report=lambda m, ckpt: seen.append((m["epoch"], (ckpt / "checkpoint.pt").is_file())),
    )
    assert seen == [(1, True), (2, True)]


def test_resume_refuses_a_different_experiment(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(epochs=1), run)
    with pytest.raises(MixemError, match="w_entropy"):
        train(tiny_config(epochs=2, w_entropy=1.0), run, resume_from=run)


def test_a_new_run_never_overwrites_a_finished_one(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(epochs=1), run)
    before = (run / "checkpoint" / "checkpoint.pt").read_bytes()
    with pytest.raises(MixemError, match="already holds a run; continue it with --resume"):
        train(tiny_config(epochs=1), run)
    assert (run / "checkpoint" / "checkpoint.pt").read_bytes() == before


def test_lr_schedule_is_constant_then_cosine():
    cfg = Config().optim
    cfg.epochs, cfg.constant_lr_epochs = 20, 10
    assert lr_factor(0, 5, cfg) == lr_factor(49, 5, cfg) == 1.0
    assert lr_factor(75, 5, cfg) == pytest.approx(0.5)
    assert lr_factor(100, 5, cfg) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "imagenet"], "invalid choice"),
        (["--w-entropy", "-1"], "--w-entropy must be >= 0"),
        (["--crop-scale-min", "0"], "crop-scale-min"),
        (["--head", "simclr"], "--preset simclr"),
        (["--resume", "/nonexistent/run"], "No run to resume"),
    ],
)
def test_user_errors_exit_2_with_one_sentence(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main([*argv, "--out", str(tmp_path / "out")]))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_data_exits_2_and_says_where_files_go(tmp_path, capsys):
    code = main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "nodata"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "cifar-10-batches-py" in err and "--download" in err


def _ddp_worker(rank: int, init_file: str, out_dir: str, results: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        reports = []
        final = train(tiny_config(), out_dir, report=lambda metrics, ckpt: reports.append((metrics, ckpt)))
        results[rank] = {
            "final": final,
            "epochs": [m["epoch"] for m, _ in reports],
            "checkpoints": [ckpt is not None for _, ckpt in reports],
        }
    finally:
        dist.destroy_process_group()


def test_ddp_across_two_processes_trains_and_evaluates_on_rank_0(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path / "run"), results), nprocs=2)
        results = dict(results)
    assert results[0]["epochs"] == results[1]["epochs"] == [1, 2]  # every rank reports every epoch
    assert results[0]["checkpoints"] == [True, True] and results[1]["checkpoints"] == [False, False]
    assert results[0]["final"]["acc_max"] > 0.3 and results[1]["final"] == {}  # rank 0 alone clusters
    assert torch.load(tmp_path / "run" / "checkpoint" / "checkpoint.pt", weights_only=False)["epoch"] == 2
