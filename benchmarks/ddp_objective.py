"""The loss of one batch computed by 1 worker and by 2 DDP workers (gloo, on this machine's CPUs).

    .venv/bin/python benchmarks/ddp_objective.py            # the digits model, a global batch of 256

Each worker takes its half of the same global batch of the same two views; the 2-worker loss
gathers z and pi across workers first (``mixem.train.gathered_objective``), as training does.
Printed: every loss term from 1 worker and from each of the 2, with BatchNorm in eval mode (the
model then maps each image alone: the two must agree to float precision) and in train mode
(BatchNorm normalises each worker's half with its own statistics, as the authors' DataParallel
did: close, not equal), and, for contrast, the 2-worker loss without the gather (each worker's
NT-Xent sees only its own half as negatives: a different objective).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":  # `python benchmarks/ddp_objective.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mixem.augment import augment
from mixem.config import DATASETS, Config
from mixem.data import load_dataset
from mixem.model import MixemModel, TwoViews
from mixem.scores import LOSS_TERMS
from mixem.train import gathered_objective


def batch_and_model(batch: int):
    config = Config.for_dataset("digits")
    images = load_dataset("digits").select("train")[0][:batch]
    generator = torch.Generator().manual_seed(0)
    views = augment(images, config.augment, generator), augment(images, config.augment, generator)
    torch.manual_seed(0)
    model = TwoViews(MixemModel(config.model, DATASETS["digits"].channels, DATASETS["digits"].image_size))
    return config, views, model


def losses(model, views, config, world_size: int, *, train_mode: bool) -> dict[str, float]:
    model.train(train_mode)
    with torch.no_grad():
        terms = gathered_objective(*model(*views), dataclasses.asdict(config.loss), world_size)
    return {name: terms[name].item() for name in LOSS_TERMS}


def worker(rank: int, init_file: str, batch: int, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        config, views, model = batch_and_model(batch)
        half = tuple(view[rank * batch // 2 : (rank + 1) * batch // 2] for view in views)
        measured = {mode: losses(model, half, config, 2, train_mode=mode == "train") for mode in ("eval", "train")}
        measured["no gather"] = losses(model, half, config, 1, train_mode=True)
        results[rank] = measured  # one assignment: the manager's dict holds copies
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="global batch (default: %(default)s)")
    args = parser.parse_args()
    config, views, model = batch_and_model(args.batch)
    one = {mode: losses(model, views, config, 1, train_mode=mode == "train") for mode in ("eval", "train")}
    with tempfile.TemporaryDirectory() as folder, mp.Manager() as manager:
        shared = manager.dict()
        mp.spawn(worker, args=(f"{folder}/init", args.batch, shared), nprocs=2)
        two = dict(shared)
    print(f"digits model, global batch {args.batch}: loss terms by 1 worker and by each of 2 DDP workers")
    print(f"{'BatchNorm':<10}{'term':<18}{'1 worker':>12}{'2: rank 0':>12}{'2: rank 1':>12}{'|diff|':>10}")
    for mode in ("eval", "train"):
        for name in LOSS_TERMS:
            a, b, c = one[mode][name], two[0][mode][name], two[1][mode][name]
            print(f"{mode:<10}{name:<18}{a:>12.6f}{b:>12.6f}{c:>12.6f}{max(abs(a - b), abs(a - c)):>10.2e}")
    print(f"without the gather (train mode), rank 0 total {two[0]['no gather']['total']:.6f}, rank 1 "
          f"{two[1]['no gather']['total']:.6f}, vs 1 worker {one['train']['total']:.6f}")


if __name__ == "__main__":
    main()
