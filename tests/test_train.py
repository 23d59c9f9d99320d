"""The trainer end to end on digits: CLI, output files, resume, DDP, and the errors a user can cause."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import mixem.train as train_module
from mixem.cli import main
from mixem.config import Config
from mixem.data import load_dataset
from mixem.errors import MixemError, NonFiniteLossError
from mixem.evaluate import evaluate
from mixem.model import MixemModel
from mixem.scores import FIXED_VARIANT, METRIC_KEYS, VALIDATION_KEYS
from mixem.train import LrSchedule, lr_factor, train

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
    assert config["instance_form"] == "max_prob" and config["kmeans_max_iter"] == 10  # the authors'
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics) and set(VALIDATION_KEYS) <= set(metrics) and metrics["epoch"] == 2
    assert all(0 <= metrics[k] <= 1 for k in METRIC_KEYS if k.endswith(("_acc", "_nmi")))
    assert all(-1 <= metrics[k] <= 1 for k in METRIC_KEYS if k.endswith("_silhouette") and k != "argmax_pi_silhouette")
    history = read_history(run)
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(row["evaluated"] and "loss_contrastive" in row and "val_contrastive" in row for row in history)
    # 1,797 images less 5% held out for the validation loss = 1,708; 13 whole batches of 128.
    assert all(row["train_images"] == 13 * 128 and row["world_size"] == 1 for row in history)
    assert (run / "checkpoint" / "checkpoint.pt").is_file()
    assert f"{FIXED_VARIANT}*" in result.stdout  # the final table marks the fixed variant
    assert "oracle" in result.stdout


def test_training_beats_the_untrained_model_by_a_clear_margin(tmp_path):
    """An untrained digits model already clusters well above chance (ACC ~0.35-0.6 depending on the
    variant), so the check is against the same model untrained, on the fixed variant."""
    config = Config.for_dataset("digits", {"epochs": 6, "kmeans_n_init": 10})
    trained = train(config, tmp_path / "run", progress=False)
    torch.manual_seed(config.optim.seed)  # train() initialises the model right after this
    untrained_model = MixemModel(config.model, 1, 8)
    images, labels = load_dataset("digits").select("test")
    untrained = evaluate(untrained_model, images, labels, 10, n_init=10, max_iter=10, batch_size=1024,
                         seed=config.optim.seed, noise_seeds=0, device=torch.device("cpu"))
    key = f"{FIXED_VARIANT}_acc"
    assert trained[key] > untrained[key] + 0.15, (trained[key], untrained[key])


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
    with pytest.raises(MixemError, match=r"already holds a run \(config.json, history.jsonl, metrics.json, "
                                         r"checkpoint\); continue it with --resume"):
        train(tiny_config(epochs=1), run)
    assert (run / "checkpoint" / "checkpoint.pt").read_bytes() == before
    # A finished run whose checkpoint was deleted to save disk is still a run: its results stay.
    shutil.rmtree(run / "checkpoint")
    metrics = (run / "metrics.json").read_bytes()
    with pytest.raises(MixemError, match=r"already holds a run \(config.json, history.jsonl, metrics.json\)"):
        train(tiny_config(epochs=1), run)
    assert (run / "metrics.json").read_bytes() == metrics
    # Nor does a run write among a sweep's results.
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "trials.parquet").write_bytes(b"a sweep's")
    with pytest.raises(MixemError, match="holds a sweep's results \\(trials.parquet\\), not a run"):
        train(tiny_config(epochs=1), sweep)
    assert sorted(path.name for path in sweep.iterdir()) == ["trials.parquet"]


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_writes(tmp_path):
    """Two `python -m mixem.train --out RUN` at once: the second is refused in one sentence naming the first."""
    from mixem.files import FolderLock

    held = FolderLock(tmp_path / "run", "run", "wait.")  # as the first run holds it while it trains
    try:
        assert main(["--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    finally:
        held.release()
    assert train(tiny_config(epochs=1), tmp_path / "run")  # free again once the first one ends


def test_stray_launcher_variables_and_ctrl_c_say_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert main(["--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "a")]) == 2
    assert "WORLD_SIZE=2 is set but not RANK, MASTER_ADDR, MASTER_PORT" in capsys.readouterr().err
    monkeypatch.delenv("WORLD_SIZE")
    train(tiny_config(epochs=1), tmp_path / "c")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "run_epoch", interrupted)
    assert main(["--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "b")]) == 130
    assert "Stopped before the first epoch was saved" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "c"), "--epochs", "2"]) == 130
    assert f"Continue with: python -m mixem.train --resume {tmp_path / 'c'}" in capsys.readouterr().err


def test_a_k_that_cannot_fit_is_refused_with_an_estimate(tmp_path):
    with pytest.raises(MixemError, match=r"--num-components 100000 needs about [0-9.,]+ GiB for the mixture head"):
        train(tiny_config(epochs=1, num_components=100_000), tmp_path / "run")
    assert not (tmp_path / "run" / "config.json").exists()


def authors_learning_rates(epochs: int, warmup: int) -> list[float]:
    """The authors' train.py loop: CosineAnnealingLR(T_max=epochs), stepped after each epoch from
    epoch ``warmup`` (1-based) on; the learning rate each epoch trains with, initial lr 1."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0)
    rates = []
    for epoch_counter in range(1, epochs + 1):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()  # nothing to update; keeps PyTorch's step-order check quiet
        if epoch_counter >= warmup:
            scheduler.step()
    return rates


@pytest.mark.parametrize("epochs, warmup", [(200, 10), (20, 5), (12, 1), (12, 0)])
def test_lr_schedule_is_the_authors(epochs, warmup):
    ours = [lr_factor(epoch, warmup, epochs) for epoch in range(epochs)]
    assert ours == pytest.approx(authors_learning_rates(epochs, warmup), rel=1e-9, abs=1e-12)


def test_resuming_with_more_epochs_never_raises_the_learning_rate():
    short = LrSchedule(epochs=10, constant_lr_epochs=2)
    longer = short.extended_to(30, from_epoch=6)
    rates = [short.factor(epoch) for epoch in range(6)] + [longer.factor(epoch) for epoch in range(6, 30)]
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:], strict=False))
    assert longer.factor(6) == pytest.approx(short.factor(6))  # continues where it was
    assert rates[-1] < 0.01  # and still decays to about zero at the new end
    assert short.extended_to(10, from_epoch=6) is short


def test_resume_with_more_epochs_in_a_run(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(epochs=3, constant_lr_epochs=1, eval_every=0), run)
    train(tiny_config(epochs=6, constant_lr_epochs=1, eval_every=0), run, resume_from=run)
    rates = [row["lr"] for row in read_history(run)]
    assert len(rates) == 6 and all(later <= earlier for earlier, later in zip(rates, rates[1:], strict=False))
    assert rates[3] < rates[2]


def test_a_diverging_run_stops_with_one_sentence_and_no_checkpoint(tmp_path, capsys):
    # Adam's steps scale with the learning rate: at 1e20 the weights overflow in the first epoch.
    code = main(["--dataset", "digits", *TINY, "--lr", "1e20", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "The loss became nan at epoch 1; lower --lr" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_non_finite_loss_is_a_mixem_error_with_the_epoch(tmp_path, monkeypatch):
    real = train_module.mixem_loss

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        return {**terms, "total": terms["total"] * float("inf")}

    monkeypatch.setattr(train_module, "mixem_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="at epoch 1"):
        train(tiny_config(), tmp_path / "run")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "imagenet"], "invalid choice"),
        (["--w-entropy", "-1"], "--w-entropy must be >= 0"),
        (["--crop-scale-min", "0"], "crop-scale-min"),
        (["--head", "simclr"], "--preset simclr"),
        (["--resume", "/nonexistent/run"], "No run to resume"),
        (["--batch-size", "1"], "--batch-size must be at least 2"),
        (["--val-fraction", "0.5"], "--val-fraction must lie in [0, 0.5)"),
        (["--kmeans-max-iter", "0"], "--kmeans-max-iter must be > 0"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--seed", "-1"], "--seed must lie in [0, 2**32)"),
        (["--epochs", "0"], "--epochs must be > 0"),
        (["--stl10-unlabeled"], "--stl10-unlabeled is for stl10 only"),
        (["--device", "nope"], "--device nope is not a device this trainer runs on; pass cpu, cuda or cuda:N"),
        (["--device", "meta"], "--device meta is not a device this trainer runs on"),
        (["--device", "mps"], "--device mps is not a device this trainer runs on"),
        (["--data-dir", "/no/such/folder"], "--data-dir /no/such/folder is not a folder"),
        *([] if torch.cuda.is_available() else [(["--device", "cuda"], "--device cuda asks for a GPU, but ")]),
    ],
)
def test_user_errors_exit_2_with_one_sentence(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main([*argv, "--out", str(tmp_path / "out")]))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_resume_refuses_a_corrupt_config_and_another_out_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("[1, 2]")
    assert main(["--resume", str(run)]) == 2
    assert "config.json is corrupt (not a JSON object of fields)" in capsys.readouterr().err
    (run / "config.json").write_text(json.dumps(Config.for_dataset("digits").to_flat()))
    assert main(["--resume", str(run), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "--out and --resume name different folders" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists() and sorted(path.name for path in run.iterdir()) == ["config.json"]


def test_an_out_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "out").write_text("precious")
    assert main(["--dataset", "digits", *TINY, "--out", str(tmp_path / "out")]) == 2
    assert "is a file, not a run folder" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "precious"


def test_stl10_unlabelled_images_are_trained_on(tmp_path):
    from test_data import write_stl10

    write_stl10(tmp_path / "data", n_train=6, n_test=12, n_unlabeled=20)
    small = dict(backbone="small_cnn", cnn_width=4, hidden_dim=8, batch_size=4, epochs=1, val_fraction=0.0,
                 kmeans_n_init=1, eval_batch_size=8)
    seen = {}
    for unlabeled in (False, True):
        config = Config.for_dataset("stl10", {**small, "stl10_unlabeled": unlabeled})
        train(config, tmp_path / f"run-{unlabeled}", data_dir=tmp_path / "data",
              report=lambda metrics, ckpt, key=unlabeled: seen.setdefault(key, metrics["train_images"]))
    assert seen == {False: 16, True: 36}  # train+test (6 + 12), then + 20 unlabelled, in whole batches of 4


def test_missing_data_exits_2_and_says_where_files_go(tmp_path, capsys):
    code = main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "nodata"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "cifar-10-batches-py" in err and "--download" in err


class ToyEncoder(torch.nn.Module):
    """A model without BatchNorm, whose outputs depend on its own row alone: what one rank computes
    on its share of a batch is exactly what one process computes on those rows."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(6, 8 + 4)

    def forward(self, x):
        out = self.linear(x)
        return {"z": out[:, :8], "pi": out[:, 8:].softmax(dim=1)}


WEIGHTS = dict(temperature=0.5, w_entropy=2.0, w_instance=0.1, instance_form="max_prob", w_pull=0.1, w_push=0.05)


def toy_views():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(16, 6, generator=generator), torch.randn(16, 6, generator=generator)


def toy_step(views_model, view_a, view_b, world_size):
    """One SGD step (not Adam, whose steps ignore the gradient's scale) of the gathered objective."""
    optimizer = torch.optim.SGD(views_model.parameters(), lr=0.5)
    terms = train_module.gathered_objective(*views_model(view_a, view_b), WEIGHTS, world_size)
    optimizer.zero_grad()
    terms["total"].backward()
    optimizer.step()
    return {name: value.item() for name, value in terms.items()}


def _toy_ddp_worker(rank: int, init_file: str, results: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        view_a, view_b = (view[rank * 8 : (rank + 1) * 8] for view in toy_views())  # this rank's half
        views_model = torch.nn.parallel.DistributedDataParallel(train_module.TwoViews(ToyEncoder()))
        terms = toy_step(views_model, view_a, view_b, world_size=2)
        results[rank] = {"terms": terms, "weight": views_model.module.model.linear.weight.detach().clone()}
    finally:
        dist.destroy_process_group()


def test_two_workers_optimise_the_objective_of_one_worker_with_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    reference_model = train_module.TwoViews(ToyEncoder())
    reference_terms = toy_step(reference_model, *toy_views(), world_size=1)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_toy_ddp_worker, args=(str(tmp_path / "init"), results), nprocs=2)
        results = dict(results)
    for rank in (0, 1):
        # The same loss on the same global batch: NT-Xent's negatives and the marginal entropy span both ranks.
        assert results[rank]["terms"] == pytest.approx(reference_terms, rel=1e-5)
        # And the same update: the gather's summed gradients and DDP's average cancel out.
        assert torch.allclose(results[rank]["weight"], reference_model.model.linear.weight, atol=1e-6)
    assert torch.equal(results[0]["weight"], results[1]["weight"])
    # Without the gather, each rank would see only its own 8 rows: a different loss.
    half = train_module.gathered_objective(*reference_model(*(v[:8] for v in toy_views())), WEIGHTS, 1)
    assert abs(half["contrastive"].item() - reference_terms["contrastive"]) > 0.1


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
            "losses": [m["loss_total"] for m, _ in reports],
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
    assert results[0]["losses"] == results[1]["losses"]  # both ranks computed the one global loss
    assert torch.load(tmp_path / "run" / "checkpoint" / "checkpoint.pt", weights_only=False)["epoch"] == 2
    history = read_history(tmp_path / "run")
    assert all(row["world_size"] == 2 and row["train_images"] == 13 * 128 for row in history)


def test_torchrun_launches_ddp_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "mixem.train", "--dataset", "digits", "--out", str(run), *TINY],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["world_size"] for row in read_history(run)] == [2, 2]
    assert result.stdout.count("oracle") == 1  # rank 0 alone prints the results


def test_a_worker_uses_the_cpus_it_was_given_whatever_omp_num_threads_says():
    """Ray's cluster launcher exports OMP_NUM_THREADS=1 to every node: set_cpu_threads gives torch and the
    OpenMP pool of scikit-learn's K-means the CPUs Ray assigned."""
    script = ("import sklearn.cluster, torch; from threadpoolctl import threadpool_info; "
              "from mixem.device import set_cpu_threads; set_cpu_threads(3); "
              "print(torch.get_num_threads(), sorted({p['num_threads'] for p in threadpool_info() "
              "if p['user_api'] == 'openmp'}))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["3", "[3]"]
