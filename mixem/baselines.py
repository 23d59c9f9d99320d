"""No-learning baselines: K-means on the evaluation images' pixels, with the trainer's K-means settings.

    python -m mixem.baselines digits                     # 5 seeds, the final evaluation's settings
    python -m mixem.baselines fashion-mnist --seeds 5 --kmeans-n-init 50

A trained representation is worth something only where it beats these. Each baseline clusters the
same images the trainer evaluates on (``eval_split``), into as many clusters as there are classes,
with the trainer's K-means (k-means++ init, ``n_init`` restarts, ``max_iter`` iterations,
``random_state`` = the seed), and is scored with the same ACC, NMI and ARI:

- ``pixels``: the raw pixels, scaled to [0, 1];
- ``pixels_l2``: each image's pixel vector L2-normalised;
- ``pixels_pca50``: the first 50 principal components of the pixels (PCA fit on those images).

Results are cached on disk (``$MIXEM_CACHE_DIR``, else ``~/.cache/mixem``), keyed by the images'
content and the K-means settings, so each is computed once per machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import normalize as l2_normalize

from mixem.files import write_atomic
from mixem.metrics import cluster_metrics

PCA_COMPONENTS = 50
BASELINES = {
    "pixels": "K-means on raw pixels",
    "pixels_l2": "K-means on L2-normalised pixels",
    f"pixels_pca{PCA_COMPONENTS}": f"K-means on {PCA_COMPONENTS} principal components of the pixels",
}
CACHE_ENV = "MIXEM_CACHE_DIR"


def representations(images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Each baseline's representation of uint8 ``images`` (N, C, H, W), as (N, D) float64."""
    pixels = images.reshape(len(images), -1).astype(np.float64) / 255.0
    components = min(PCA_COMPONENTS, *pixels.shape)
    return {"pixels": pixels, "pixels_l2": l2_normalize(pixels),
            f"pixels_pca{PCA_COMPONENTS}": PCA(components, random_state=seed).fit_transform(pixels)}


def cluster_baseline(x: np.ndarray, labels: np.ndarray, num_clusters: int, *, n_init: int, max_iter: int,
                     seed: int) -> dict[str, float]:
    """ACC, NMI and ARI of K-means on ``x`` (N, D): the trainer's ``kmeans_*`` clustering, on pixels."""
    kmeans = KMeans(num_clusters, init="k-means++", n_init=n_init, max_iter=max_iter, random_state=seed)
    return cluster_metrics(labels, kmeans.fit(x).labels_)


def pixel_baselines(images: np.ndarray, labels: np.ndarray, num_clusters: int, *, seeds: list[int], n_init: int,
                    max_iter: int, cache: Path | None = None) -> list[dict]:
    """One row per baseline and seed: ``{"baseline", "seed", "n_init", "max_iter", "acc", "nmi", "ari"}``.
    Rows already in ``cache`` (a JSON file) are read from it; new ones are added to it."""
    known = _read_cache(cache)
    rows = []
    for seed in seeds:
        missing = [name for name in BASELINES if _key(name, seed, n_init, max_iter) not in known]
        computed = representations(images, seed) if missing else {}
        for name in BASELINES:
            key = _key(name, seed, n_init, max_iter)
            if key not in known:
                known[key] = cluster_baseline(computed[name], labels, num_clusters, n_init=n_init,
                                              max_iter=max_iter, seed=seed)
                if cache is not None:
                    write_atomic(cache, json.dumps(known, indent=1, sort_keys=True) + "\n")
            rows.append({"baseline": name, "seed": seed, "n_init": n_init, "max_iter": max_iter, **known[key]})
    return rows


def dataset_baselines(dataset: str, data_dir=None, *, eval_split: str, seeds: list[int], n_init: int,
                      max_iter: int) -> list[dict]:
    """``pixel_baselines`` of ``dataset``'s evaluation images, cached by their content; each row also names
    the dataset and the split."""
    from mixem.data import load_dataset  # torch: only where the data is

    data = load_dataset(dataset, data_dir)
    images, labels = (tensor.numpy() for tensor in data.select_labelled(eval_split))
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    cache = cache_dir() / "baselines" / f"{dataset}-{eval_split}-{digest}.json"
    rows = pixel_baselines(images, labels, data.num_classes, seeds=seeds, n_init=n_init, max_iter=max_iter,
                           cache=cache)
    return [{"dataset": dataset, "eval_split": eval_split, **row} for row in rows]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mixem")


def _key(name: str, seed: int, n_init: int, max_iter: int) -> str:
    return f"{name}/seed{seed}/n_init{n_init}/max_iter{max_iter}"


def _read_cache(cache: Path | None) -> dict:
    """The cache's rows, or none when there is no cache or it cannot be read (it is recomputed then)."""
    if cache is None or not cache.is_file():
        return {}
    try:
        known = json.loads(cache.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(known, dict):
        return {}
    # A row edited or damaged by hand is recomputed, never reported: every score a finite number in its range.
    return {key: row for key, row in known.items() if _valid_row(row)}


def _valid_row(row) -> bool:
    ranges = {"acc": (0.0, 1.0), "nmi": (0.0, 1.0), "ari": (-1.0, 1.0)}
    return isinstance(row, dict) and all(
        isinstance(row.get(name), int | float) and not isinstance(row.get(name), bool)
        and math.isfinite(row[name]) and low <= row[name] <= high for name, (low, high) in ranges.items())


def main(argv: list[str] | None = None) -> int:
    import argparse

    from mixem.config import DATASETS, EvalConfig
    from mixem.errors import MixemError

    defaults = EvalConfig()
    parser = argparse.ArgumentParser(prog="python -m mixem.baselines", allow_abbrev=False,
                                     description="K-means on a dataset's evaluation pixels, the no-learning "
                                     "baselines every report compares with (cached after the first run).")
    parser.add_argument("dataset", choices=list(DATASETS))
    parser.add_argument("--data-dir", help="dataset root or URI (default: $MIXEM_DATA_DIR, else ./data)")
    parser.add_argument("--eval-split", default="test", help="images to cluster (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--kmeans-n-init", type=int, default=defaults.kmeans_n_init,
                        help="k-means++ restarts (default: %(default)s, the final evaluation's)")
    parser.add_argument("--kmeans-max-iter", type=int, default=defaults.kmeans_max_iter,
                        help="K-means iterations (default: %(default)s, the trainer's)")
    args = parser.parse_args(argv)
    for name in ("seeds", "kmeans_n_init", "kmeans_max_iter"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}.", file=sys.stderr)
            return 2
    try:
        rows = dataset_baselines(args.dataset, args.data_dir, eval_split=args.eval_split,
                                 seeds=list(range(args.seeds)), n_init=args.kmeans_n_init,
                                 max_iter=args.kmeans_max_iter)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.dataset} {args.eval_split}, {args.seeds} seeds, n_init {args.kmeans_n_init}, "
          f"max_iter {args.kmeans_max_iter}: mean ± std (ddof=1) over seeds")
    for name, about in BASELINES.items():
        scores = {metric: [row[metric] for row in rows if row["baseline"] == name] for metric in ("acc", "nmi", "ari")}
        cells = "  ".join(f"{metric.upper()} {np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"
                          for metric, v in scores.items())
        print(f"{name:<14} {cells}   ({about})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
