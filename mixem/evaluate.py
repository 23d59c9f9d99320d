"""Cluster the learned representations and score them, as the authors' ``cluster_eval``.

Representations: ``h`` (backbone), ``z`` (mixed embedding), ``dom`` (the embedding of each image's
dominant component), each raw and L2-normalised. Clusterings: K-means with k-means++ init
(``kmeans``), K-means initialised with the per-component means of argmax pi (``compinit``), and
argmax pi itself (``argmax_pi``). Every variant gets ACC, NMI and ARI.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.preprocessing import normalize as l2_normalize

from mixem.augment import normalize, to_float
from mixem.metrics import cluster_metrics

REPRESENTATIONS = ("h", "z", "dom")
NORMS = ("raw", "l2")
METRICS = ("acc", "nmi", "ari")
VARIANTS = [f"{method}_{rep}_{norm}" for method in ("kmeans", "compinit") for rep in REPRESENTATIONS for norm in NORMS]
VARIANTS.append("argmax_pi")
METRIC_KEYS = [f"{variant}_{metric}" for variant in VARIANTS for metric in METRICS] + ["acc_max"]


@torch.no_grad()
def representations(model: torch.nn.Module, images: torch.Tensor, batch_size: int, device) -> dict[str, np.ndarray]:
    """Representations of uint8 images (N, C, H, W), un-augmented: ``h``, ``z`` and, for the mixture
    head, ``dom`` (N, D) and ``pi`` (N, K), as float64 NumPy arrays."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        batch = normalize(to_float(images[start : start + batch_size].to(device, non_blocking=True)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(batch)
        if "pi" in out:
            dominant = out["pi"].argmax(dim=1)
            out["dom"] = out["embeddings"][torch.arange(len(batch), device=device), dominant]
        for name in ("h", "z", "dom", "pi"):
            if name in out:
                parts.setdefault(name, []).append(out[name].float().cpu())
    model.train(was_training)
    return {name: torch.cat(chunks).double().numpy() for name, chunks in parts.items()}


def component_mean_init(x: np.ndarray, assignment: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    """K-means initial centres: means of ``x`` (N, D) over the ``num_clusters`` most populated
    components of ``assignment`` (N,), as the authors do when K exceeds the class count. When fewer
    components are occupied, k-means++ picks the missing centres."""
    components, counts = np.unique(assignment, return_counts=True)
    largest = components[np.argsort(-counts, kind="stable")][:num_clusters]
    centres = [x[assignment == c].mean(axis=0) for c in largest]
    missing = num_clusters - len(centres)
    if missing:
        extra, _ = kmeans_plusplus(x, missing, random_state=seed)
        centres.extend(extra)
    return np.stack(centres)


def cluster_all(reps: dict[str, np.ndarray], labels: np.ndarray, num_clusters: int, n_init: int, seed: int) -> dict:
    """Every clustering variant's metrics as ``{variant}_{metric}`` keys, plus ``acc_max`` and
    ``acc_max_variant``. Variants that need pi are absent for the SimCLR head."""
    results: dict[str, float | str] = {}

    def score(variant: str, prediction: np.ndarray) -> None:
        for metric, value in cluster_metrics(labels, prediction).items():
            results[f"{variant}_{metric}"] = value

    assignment = reps["pi"].argmax(axis=1) if "pi" in reps else None
    for rep in REPRESENTATIONS:
        if rep not in reps:
            continue
        for norm in NORMS:
            x = reps[rep] if norm == "raw" else l2_normalize(reps[rep])
            kmeans = KMeans(num_clusters, init="k-means++", n_init=n_init, random_state=seed).fit(x)
            score(f"kmeans_{rep}_{norm}", kmeans.labels_)
            if assignment is not None:
                init = component_mean_init(x, assignment, num_clusters, seed)
                score(f"compinit_{rep}_{norm}", KMeans(num_clusters, init=init, n_init=1).fit(x).labels_)
    if assignment is not None:
        score("argmax_pi", assignment)
    best = max((key for key in results if key.endswith("_acc")), key=lambda key: results[key])
    results["acc_max"] = results[best]
    results["acc_max_variant"] = best.removesuffix("_acc")
    return results


def evaluate(
    model,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_clusters: int,
    *,
    n_init: int,
    batch_size: int,
    seed: int,
    device,
) -> dict:
    """Representations of ``images`` under ``model``, clustered every way; see ``cluster_all``."""
    reps = representations(model, images, batch_size, device)
    return cluster_all(reps, labels.numpy(), num_clusters, n_init, seed)
