"""The training step: MIX'EM against SimCLR on the same backbone and batch, and on a GPU the gain
of each speed option.

    python benchmarks/train_step.py --quick                  # CPU: MIX'EM / SimCLR step time, 3 backbones
    python benchmarks/train_step.py --device cuda            # + ResNet-18 MIX'EM image-views/s at 32x32

One step is what ``mixem.train.train`` runs per batch (``mixem.train.train_step``): two augmented
views, the model once per view, the objective, Adam. The MIX'EM and SimCLR steps of a backbone
run in turns in one process and the figure is the ratio of their median times (the mixture head,
its three extra terms and their gradients, over the plain projection MLP).

On CUDA, ResNet-18 MIX'EM at 32x32 with the step's GPU settings (bf16 autocast, channels_last,
fused Adam), each of them switched off in turn, and with ``torch.compile`` added: image-views per
second (2 views per image), so the gain of each is visible. 200 CIFAR-10 epochs of 60,000 images
are 24M image-views.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if __name__ == "__main__":  # `python benchmarks/train_step.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import add_arguments, check_device, figure, print_table, take_turns, waiter
from mixem.config import DATASETS, Config
from mixem.presets import ABLATIONS
from mixem.train import Speed, build_training, train_step

# (label, dataset whose preset sets the backbone, head and image size, batch, batch with --quick)
SETTINGS = [
    ("digits CNN 8x8", "digits", 256, 256),
    ("Fashion-MNIST CNN 28x28", "fashion-mnist", 256, 128),
    ("ResNet-18 32x32", "cifar10", 512, 32),
]


def step_runner(dataset: str, preset: str, batch: int, device: str, speed: Speed):
    """A function that runs one training step of ``preset`` on a fixed random batch."""
    config = Config.for_dataset(dataset, ABLATIONS[preset])
    info = DATASETS[dataset]
    torch.manual_seed(0)
    _, views_model, optimizer = build_training(config, torch.device(device), speed, world_size=1)
    images = torch.randint(0, 256, (batch, info.channels, info.image_size, info.image_size), dtype=torch.uint8,
                           device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    return lambda: train_step(views_model, optimizer, images, config, generator, 1, speed)


def flops(run) -> int:
    """Floating-point operations of one call of ``run`` (forward and backward), as torch counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def mixem_vs_simclr(quick: bool, device: str) -> list[dict]:
    """Step time of MIX'EM over SimCLR per backbone, next to the ratio of their FLOPs: the K component
    MLPs of the mixture head cost what they cost, a larger share on a small backbone."""
    rows = []
    repeats = 5 if quick else 20
    command = f"python benchmarks/train_step.py --device {device}" + (" --quick" if quick else "")
    speed = Speed.for_device(torch.device(device))
    for label, dataset, batch, quick_batch in SETTINGS:
        batch = quick_batch if quick else batch
        runners = [step_runner(dataset, preset, batch, device, speed) for preset in ("mixem", "simclr")]
        mixem, simclr = take_turns(runners, repeats, waiter(device))
        flop_ratio = flops(runners[0]) / flops(runners[1])
        rows += [figure(f"train step: MIX'EM, {label}, batch {batch}, {device}", mixem * 1000, "ms", command),
                 figure(f"train step: SimCLR, {label}, batch {batch}, {device}", simclr * 1000, "ms", command),
                 figure(f"train step: MIX'EM / SimCLR time, {label} (goal <= 1.05)", mixem / simclr, "x", command),
                 figure(f"train step: MIX'EM / SimCLR FLOPs, {label}", flop_ratio, "x", command)]
    return rows


def gpu_options(quick: bool, device: str, batch: int = 512) -> list[dict]:
    """Image-views/s of ResNet-18 MIX'EM at 32x32 with the GPU settings, each removed, and compiled."""
    command = f"python benchmarks/train_step.py --device {device}" + (" --quick" if quick else "")
    full = Speed.for_device(torch.device(device))
    variants = {
        "bf16 + channels_last + fused Adam": full,
        "without bf16 autocast": dataclasses.replace(full, bf16=False),
        "without channels_last": dataclasses.replace(full, channels_last=False),
        "without fused Adam": dataclasses.replace(full, fused_adam=False),
        "with torch.compile": dataclasses.replace(full, compile=True),
    }
    runners = [step_runner("cifar10", "mixem", batch, device, speed) for speed in variants.values()]
    for run in runners:  # compile and autotune outside the timed turns
        for _ in range(3):
            run()
    seconds = take_turns(runners, 5 if quick else 20, waiter(device))
    return [figure(f"ResNet-18 MIX'EM 32x32, batch {batch}, {device}: {name}", 2 * batch / time, "views/s", command)
            for name, time in zip(variants, seconds, strict=True)]


def measure(quick: bool, device: str) -> list[dict]:
    rows = mixem_vs_simclr(quick, device)
    if torch.device(device).type == "cuda":
        rows += gpu_options(quick, device)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_device(parser, args.device)
    print_table(measure(args.quick, args.device))


if __name__ == "__main__":
    main()
