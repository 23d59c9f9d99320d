"""What the clustering evaluation costs next to a training epoch, so a sweep can choose --eval-every.

    .venv/bin/python benchmarks/eval_cost.py --dataset digits
    .venv/bin/python benchmarks/eval_cost.py --dataset fashion-mnist --epochs 1 --repeats 1

Trains ``--epochs`` epochs with the dataset's preset, then times one full evaluation (every
variant) for each ``--n-init``, ``--repeats`` times, and prints medians side by side with the
median epoch time of the same run (the machine is shared: compare within one run only).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from mixem.config import Config
from mixem.data import load_dataset
from mixem.evaluate import evaluate
from mixem.model import MixemModel
from mixem.train import pick_device, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=3, help="epochs trained before timing (default: 3)")
    parser.add_argument("--n-init", type=int, nargs="+", default=[50, 10, 3], help="k-means++ restarts to time")
    parser.add_argument("--repeats", type=int, default=3, help="evaluations timed per n_init (default: 3)")
    args = parser.parse_args()

    config = Config.for_dataset(args.dataset, {"epochs": args.epochs, "eval_every": 0})
    with tempfile.TemporaryDirectory() as out:
        epoch_seconds = []
        train(config, out, report=lambda metrics, _: epoch_seconds.append(metrics["epoch_seconds"]))
        data = load_dataset(args.dataset)
        images, labels = data.select(config.data.eval_split)
        device = pick_device()
        model = MixemModel(config.model, images.shape[1], images.shape[-1]).to(device)
        model.load_state_dict(torch.load(f"{out}/checkpoint/checkpoint.pt", weights_only=False)["model"])

    epoch = statistics.median(epoch_seconds)
    print(f"{args.dataset}: {len(images)} evaluation images, median epoch {epoch:.2f} s over {len(epoch_seconds)}")
    print(f"{'n_init':>7} {'eval s (median)':>16} {'eval / epoch':>13}")
    for n_init in args.n_init:
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            evaluate(
                model,
                images,
                labels,
                data.num_classes,
                n_init=n_init,
                max_iter=config.eval.kmeans_max_iter,
                batch_size=config.eval.eval_batch_size,
                seed=0,
                device=device,
            )
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(f"{n_init:>7} {median:>16.2f} {median / epoch:>13.2f}")


if __name__ == "__main__":
    main()
