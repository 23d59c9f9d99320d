"""What an evaluation costs next to a training epoch, so a sweep can choose how often to evaluate.

    python benchmarks/eval_cost.py --quick                     # digits
    python benchmarks/eval_cost.py --dataset fashion-mnist
    python benchmarks/eval_cost.py --dataset cifar10 --data-dir ~/data     # torchvision's layout, as mixem.train

Trains the dataset preset for a few epochs, then times, in turns, one training epoch (the
trainer's own ``epoch_seconds`` of the same run) and one full evaluation (every K-means variant,
the silhouettes and the validation loss) with the final evaluation's k-means++ restarts (50, the
authors') and with the interim one's (3, evaluations before the last epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":  # `python benchmarks/eval_cost.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import add_arguments, check_device, figure, print_table, take_turns, waiter
from mixem.config import DATASETS, Config
from mixem.data import load_dataset
from mixem.errors import MixemError
from mixem.evaluate import evaluate, validation_loss
from mixem.model import MixemModel
from mixem.train import split_validation, train


def measure(quick: bool, device: str, dataset: str = "digits", data_dir: Path | None = None,
            download: bool = False) -> list[dict]:
    epochs = 2 if quick else 3
    config = Config.for_dataset(dataset, {"epochs": epochs, "eval_every": 0})
    command = f"python benchmarks/eval_cost.py --dataset {dataset} --device {device}" + (" --quick" if quick else "")
    data = load_dataset(dataset, data_dir, download=download)  # missing files stop us here, before training
    with tempfile.TemporaryDirectory() as out:
        epoch_seconds = []
        train(config, out, data_dir=data_dir, device=device, progress=False,
              report=lambda metrics, _: epoch_seconds.append(metrics["epoch_seconds"]))
        info = DATASETS[dataset]
        model = MixemModel(config.model, info.channels, info.image_size).to(device)
        model.load_state_dict(torch.load(f"{out}/checkpoint/checkpoint.pt", weights_only=False)["model"])
    images, labels = data.select_labelled(config.data.eval_split)
    held_out = split_validation(data.select(config.data.train_split)[0], config.data.val_fraction,
                                config.optim.seed)[1].to(device)

    def evaluation(n_init: int, noise_seeds: int):
        def run():
            evaluate(model, images, labels, data.num_classes, n_init=n_init, max_iter=config.eval.kmeans_max_iter,
                     batch_size=config.eval.eval_batch_size, seed=0, noise_seeds=noise_seeds,
                     device=torch.device(device))
            validation_loss(model, held_out, config.augment, dataclasses.asdict(config.loss),
                            batch_size=config.optim.batch_size, device=device)
        return run

    # As the trainer: the final evaluation also measures the reported clusterings' spread over K-means seeds.
    final, interim = take_turns([evaluation(config.eval.kmeans_n_init, config.eval.kmeans_noise_seeds),
                                 evaluation(config.eval.interim_kmeans_n_init, 0)],
                                1 if quick else 3, waiter(device))
    epoch = statistics.median(epoch_seconds)
    return [figure(f"evaluation: one {dataset} training epoch ({len(images)} images evaluated)", epoch, "s", command),
            figure(f"evaluation: final ({config.eval.kmeans_n_init} k-means++ restarts) / epoch", final / epoch, "x",
                   command),
            figure(f"evaluation: interim ({config.eval.interim_kmeans_n_init} restarts) / epoch", interim / epoch, "x",
                   command)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--dataset", default="digits", choices=list(DATASETS), help="default: %(default)s")
    parser.add_argument("--data-dir", type=Path,
                        help="dataset root in torchvision's layout, as for mixem.train "
                             "(default: $MIXEM_DATA_DIR or ./data)")
    parser.add_argument("--download", action="store_true", help="download the dataset into --data-dir when missing")
    args = parser.parse_args(argv)
    check_device(parser, args.device)
    try:
        rows = measure(args.quick, args.device, args.dataset, args.data_dir, args.download)
    except MixemError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print_table(rows)


if __name__ == "__main__":
    main()
