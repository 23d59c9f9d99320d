"""Score a model without training it: cluster its representations as the authors' ``cluster_eval``,
and measure the label-free validation loss.

Representations: ``h`` (backbone), ``z`` (mixed embedding), ``dom`` (each image's dominant
component's L2-normalised embedding), each raw and L2-normalised. Clusterings: K-means with
k-means++ init (``kmeans``), K-means initialised with the per-component means of argmax pi
(``compinit``), and argmax pi itself (``argmax_pi``). Every K-means is scikit-learn's with the
authors' ``max_iter`` (10) and a seeded ``random_state``. Every variant gets ACC, NMI and ARI
(against the labels) and a label-free silhouette score; ``mixem.scores`` names them all.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.metrics import pairwise_distances, silhouette_score
from sklearn.preprocessing import normalize as l2_normalize

from mixem.augment import augment, normalize, to_float
from mixem.config import AugmentConfig
from mixem.losses import mixem_loss
from mixem.metrics import cluster_metrics
from mixem.scores import LOSS_TERMS, NORMS, ORACLE_METRIC, REPRESENTATIONS

# Rows of the silhouette's fixed subsample (silhouette is quadratic in the rows).
SILHOUETTE_ROWS = 5000
# The validation loss augments with this seed, whatever the run's: values compare across epochs and trials.
VALIDATION_AUGMENT_SEED = 20_200_718


@torch.no_grad()
def representations(model: torch.nn.Module, images: torch.Tensor, batch_size: int, device) -> dict[str, np.ndarray]:
    """Representations of uint8 images (N, C, H, W), un-augmented, in float32 (no autocast: K-means
    sees full precision): ``h``, ``z`` and, for the mixture head, ``dom`` (N, D) and ``pi`` (N, K),
    as float64 NumPy arrays."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        out = dict(model(normalize(to_float(images[start : start + batch_size].to(device, non_blocking=True)))))
        if "pi" in out:
            # The authors take the dominant component's embedding after L2-normalising every e_k.
            dominant = out["pi"].argmax(dim=1)
            out["dom"] = F.normalize(out["embeddings"], dim=2)[torch.arange(len(dominant), device=device), dominant]
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


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette of ``labels`` (n,) given their pairwise ``distances`` (n, n); NaN with one cluster."""
    if not 1 < len(np.unique(labels)) < len(labels):
        return float("nan")
    return float(silhouette_score(distances, labels, metric="precomputed"))


def cluster_all(
    reps: dict[str, np.ndarray], labels: np.ndarray, num_clusters: int, *, n_init: int, max_iter: int, seed: int
) -> dict:
    """Every clustering variant's metrics as ``{variant}_{metric}`` keys, plus ``acc_max`` and
    ``acc_max_variant``. Variants that need pi are absent for the SimCLR head.

    Silhouettes use one fixed subsample of at most ``SILHOUETTE_ROWS`` rows (the same rows for every
    variant and every run on the same images), Euclidean in the clustered space; argmax pi's is
    measured on the L2-normalised z."""
    results: dict[str, float | str] = {}
    sample = np.arange(len(labels))
    if len(sample) > SILHOUETTE_ROWS:
        sample = np.sort(np.random.default_rng(0).choice(len(labels), SILHOUETTE_ROWS, replace=False))

    def score(variant: str, prediction: np.ndarray, distances: np.ndarray) -> None:
        for metric, value in cluster_metrics(labels, prediction).items():
            results[f"{variant}_{metric}"] = value
        results[f"{variant}_silhouette"] = silhouette(distances, prediction[sample])

    assignment = reps["pi"].argmax(axis=1) if "pi" in reps else None
    for rep in REPRESENTATIONS:
        if rep not in reps:
            continue
        for norm in NORMS:
            x = reps[rep] if norm == "raw" else l2_normalize(reps[rep])
            distances = pairwise_distances(x[sample])
            kmeans = KMeans(num_clusters, init="k-means++", n_init=n_init, max_iter=max_iter, random_state=seed)
            score(f"kmeans_{rep}_{norm}", kmeans.fit(x).labels_, distances)
            if assignment is not None:
                init = component_mean_init(x, assignment, num_clusters, seed)
                kmeans = KMeans(num_clusters, init=init, n_init=1, max_iter=max_iter, random_state=seed)
                score(f"compinit_{rep}_{norm}", kmeans.fit(x).labels_, distances)
            if assignment is not None and (rep, norm) == ("z", "l2"):
                score("argmax_pi", assignment, distances)
    best = max((key for key in results if key.endswith("_acc")), key=lambda key: results[key])
    results[ORACLE_METRIC] = results[best]
    results[f"{ORACLE_METRIC}_variant"] = best.removesuffix("_acc")
    return results


def evaluate(
    model,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_clusters: int,
    *,
    n_init: int,
    max_iter: int,
    batch_size: int,
    seed: int,
    device,
) -> dict:
    """Representations of ``images`` under ``model``, clustered every way; see ``cluster_all``."""
    reps = representations(model, images, batch_size, device)
    return cluster_all(reps, labels.numpy(), num_clusters, n_init=n_init, max_iter=max_iter, seed=seed)


@torch.no_grad()
def validation_loss(
    model, images: torch.Tensor, augment_cfg: AugmentConfig, loss_weights: dict, *, batch_size: int, device
) -> dict[str, float]:
    """The objective on held-out uint8 ``images`` (N, C, H, W), as the authors' ``_validate``: the
    model in eval mode, whole batches, every term averaged over batches (``VALIDATION_KEYS``).

    The augmentations are drawn from ``VALIDATION_AUGMENT_SEED`` on every call, so two calls (two
    epochs, two trials) see the same views and differ only by their models."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(VALIDATION_AUGMENT_SEED)
    batch_size = min(batch_size, len(images))
    steps = len(images) // batch_size
    sums = torch.zeros(len(LOSS_TERMS), device=device)
    for step in range(steps):
        batch = images[step * batch_size : (step + 1) * batch_size].to(device, non_blocking=True)
        out_a = model(augment(batch, augment_cfg, generator))
        out_b = model(augment(batch, augment_cfg, generator))
        terms = mixem_loss(out_a.get("pi"), out_a["z"], out_b.get("pi"), out_b["z"], **loss_weights)
        sums += torch.stack([terms[name] for name in LOSS_TERMS])
    model.train(was_training)
    means = (sums / steps).tolist()
    return {
        ("val_loss" if name == "total" else f"val_{name}"): value for name, value in zip(LOSS_TERMS, means, strict=True)
    }
