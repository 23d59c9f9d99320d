"""The untrained baseline: what K-means finds in a dataset preset's model before any training.

    .venv/bin/python scripts/untrained_baseline.py --dataset digits --seeds 0 1 2

A randomly initialised network already separates digits far above chance (ACC ~0.3-0.6,
depending on the clustering), so a trained model has to be compared with this, not with 0.1.
Prints, per seed, the fixed variant's ACC (mixem.scores.FIXED_VARIANT) and acc_max (the best of
every variant, picked with the labels: an oracle), evaluated exactly as the trainer's final
evaluation does, on the model ``python -m mixem.train --dataset D --seed S`` starts from.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

if __name__ == "__main__":  # `python scripts/untrained_baseline.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mixem.config import DATASETS, Config
from mixem.data import load_dataset
from mixem.evaluate import evaluate
from mixem.model import MixemModel
from mixem.scores import FIXED_VARIANT, ORACLE_METRIC


def untrained(dataset: str, seed: int) -> dict:
    config = Config.for_dataset(dataset, {"seed": seed})
    torch.manual_seed(seed)  # as mixem.train.train, right before it builds the model
    info = DATASETS[dataset]
    model = MixemModel(config.model, info.channels, info.image_size)
    data = load_dataset(dataset)
    images, labels = data.select_labelled(config.data.eval_split)
    return evaluate(model, images, labels, data.num_classes, n_init=config.eval.kmeans_n_init,
                    max_iter=config.eval.kmeans_max_iter, batch_size=config.eval.eval_batch_size, seed=seed,
                    noise_seeds=config.eval.kmeans_noise_seeds, device=torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    fixed, oracle = [], []
    for seed in args.seeds:
        metrics = untrained(args.dataset, seed)
        fixed.append(metrics[f"{FIXED_VARIANT}_acc"])
        oracle.append(metrics[ORACLE_METRIC])
        print(f"{args.dataset} seed {seed}, untrained: {FIXED_VARIANT} ACC {fixed[-1]:.4f}, acc_max (oracle) "
              f"{oracle[-1]:.4f} ({metrics['acc_max_variant']})")
    print(f"mean over {len(args.seeds)} seeds: {FIXED_VARIANT} ACC {statistics.mean(fixed):.4f}, "
          f"acc_max (oracle) {statistics.mean(oracle):.4f}")


if __name__ == "__main__":
    main()
