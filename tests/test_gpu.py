"""Checks that need a CUDA device; they skip without one. benchmarks/gpu_check.sh runs them on a GPU."""

import pytest
import torch

from mixem.config import Config
from mixem.train import Speed, build_training, train, train_step

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("preset", [{}, {"head": "simclr", "w_entropy": 0, "w_instance": 0, "w_pull": 0, "w_push": 0}])
def test_the_training_step_makes_no_host_device_sync(preset):
    """torch's sync debug mode raises on any synchronising call (.item(), a copy to the host, a
    boolean-mask index, a data-dependent shape) inside one whole training step, loss and Adam included."""
    config = Config.for_dataset("cifar10", preset)
    device = torch.device("cuda")
    speed = Speed.for_device(device)
    _, views_model, optimizer = build_training(config, device, speed, world_size=1)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    train_step(views_model, optimizer, images, config, generator, 1, speed)  # warm-up: allocations, lazy inits
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        terms = train_step(views_model, optimizer, images, config, generator, 1, speed)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(terms["total"]).item()


@cuda
def test_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path):
    config = Config.for_dataset("digits", {"epochs": 1, "kmeans_n_init": 2})
    train(config, tmp_path / "run", device="cuda")
    resumed = train(Config.for_dataset("digits", {"epochs": 2, "kmeans_n_init": 2}), tmp_path / "run",
                    resume_from=tmp_path / "run", device="cpu")
    assert resumed["epoch"] == 2


@cuda
def test_a_gpu_index_this_machine_lacks_is_refused(tmp_path, capsys):
    from mixem.cli import main

    index = torch.cuda.device_count()
    assert main(["--device", f"cuda:{index}", "--out", str(tmp_path / "out")]) == 2
    assert f"torch sees {index} GPU(s) here" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
