"""Score a model without training it: cluster its representations as the authors' ``cluster_eval``,
and measure the label-free validation loss.

Representations: ``h`` (backbone), ``z`` (mixed embedding), ``dom`` (each image's dominant
component's L2-normalised embedding), each raw and L2-normalised. Clusterings: K-means with
k-means++ init (``kmeans``), K-means initialised with the per-component means of argmax pi
(``compinit``), and argmax pi itself (``argmax_pi``). Every K-means is scikit-learn's with the
authors' ``max_iter`` (10) and a seeded ``random_state``. Every variant gets ACC, NMI and ARI
(against the labels) and a label-free silhouette score; ``mixem.scores`` names them all. For the
mixture head, diagnostics of how far its components have become classes; at the final evaluation,
the spread of the reported clusterings over K-means seeds (within-model noise).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances, silhouette_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.preprocessing import normalize as l2_normalize

from mixem.augment import augment, normalize, to_float
from mixem.config import AugmentConfig
from mixem.losses import mixem_loss
from mixem.metrics import cluster_metrics
from mixem.scores import LOSS_TERMS, NOISE_VARIANTS, NORMS, ORACLE_METRIC, REPRESENTATIONS

# Rows of the silhouette's fixed subsample (silhouette is quadratic in the rows).
SILHOUETTE_ROWS = 5000
# A component is "used" when argmax pi gives it at least this share of the images.
USED_SHARE = 0.01
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


def component_mean_init(x: np.ndarray, assignment: np.ndarray, num_components: int, num_clusters: int,
                        seed: int) -> np.ndarray:
    """K-means initial centres (num_clusters, D), as the authors' ``cat_avg_X``: with as many components as
    clusters, the mean of ``x`` (N, D) over each component 0..K-1 of ``assignment`` (N,); with more, over
    the ``num_clusters`` most populated ones. A centre that no image gives (an empty component, or fewer
    occupied components than clusters) is a point drawn uniformly from [x.min(), x.max()] in every
    dimension, with ``seed``: theirs for an empty component (their code leaves the second case's rows
    uninitialised)."""
    counts = np.bincount(assignment, minlength=num_components)
    if num_components == num_clusters:
        chosen = np.arange(num_components)
    else:
        chosen = np.argsort(-counts, kind="stable")[:num_clusters]
    centres = np.random.default_rng(seed).uniform(x.min(), x.max(), size=(num_clusters, x.shape[1]))
    for row, component in enumerate(chosen):
        if counts[component]:
            centres[row] = x[assignment == component].mean(axis=0)
    return centres


def kmeans_labels(x: np.ndarray, num_clusters: int, *, init: np.ndarray | None, n_init: int, max_iter: int,
                  seed: int) -> np.ndarray:
    """scikit-learn's K-means of ``x``: k-means++ with ``n_init`` restarts, or one run from ``init``."""
    if init is None:
        kmeans = KMeans(num_clusters, init="k-means++", n_init=n_init, max_iter=max_iter, random_state=seed)
    else:
        kmeans = KMeans(num_clusters, init=init, n_init=1, max_iter=max_iter, random_state=seed)
    return kmeans.fit(x).labels_


def clusterings(reps: dict[str, np.ndarray], num_clusters: int, *, n_init: int, max_iter: int,
                seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every clustering variant (``mixem.scores.VARIANTS``) of ``reps``: ``{variant: (labels (N,), the
    clustered representation (N, D))}``. Variants that need pi are absent for the SimCLR head; argmax pi is
    paired with the L2-normalised z, where its silhouette is measured."""
    found = {}
    assignment = reps["pi"].argmax(axis=1) if "pi" in reps else None
    for rep in REPRESENTATIONS:
        if rep not in reps:
            continue
        for norm in NORMS:
            x = reps[rep] if norm == "raw" else l2_normalize(reps[rep])
            found[f"kmeans_{rep}_{norm}"] = kmeans_labels(x, num_clusters, init=None, n_init=n_init,
                                                          max_iter=max_iter, seed=seed), x
            if assignment is not None:
                init = component_mean_init(x, assignment, reps["pi"].shape[1], num_clusters, seed)
                found[f"compinit_{rep}_{norm}"] = kmeans_labels(x, num_clusters, init=init, n_init=1,
                                                                max_iter=max_iter, seed=seed), x
                if (rep, norm) == ("z", "l2"):
                    found["argmax_pi"] = assignment, x
    return found


def mixture_diagnostics(pi: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """How far the mixture's components have become classes: the mean of max pi and the number of
    components argmax pi gives at least ``USED_SHARE`` of the images (label-free), and the purity of
    argmax pi's groups (labelled: the share of images in their group's most common class)."""
    assignment = pi.argmax(axis=1)
    counts = np.bincount(assignment, minlength=pi.shape[1])
    return {"pi_max_mean": float(pi.max(axis=1).mean()),
            "components_used": float((counts >= USED_SHARE * len(assignment)).sum()),
            "component_purity": float(contingency_matrix(labels, assignment).max(axis=0).sum() / len(labels))}


def seed_spread(reps: dict[str, np.ndarray], labels: np.ndarray, variant: str, num_clusters: int, *, n_init: int,
                max_iter: int, seed: int, seeds: int) -> float:
    """The within-model noise of ``variant`` (a K-means one): the std (ddof=1) of its ACC over ``seeds``
    K-means random states, ``seed`` and the next ones (the initial draws, and the random centre of an
    empty component), on one fixed representation."""
    method, rep, norm = variant.split("_")
    x = reps[rep] if norm == "raw" else l2_normalize(reps[rep])
    accs = []
    for state in range(seed, seed + seeds):
        init = (component_mean_init(x, reps["pi"].argmax(axis=1), reps["pi"].shape[1], num_clusters, state)
                if method == "compinit" else None)
        predicted = kmeans_labels(x, num_clusters, init=init, n_init=n_init, max_iter=max_iter, seed=state)
        accs.append(cluster_metrics(labels, predicted)["acc"])
    return float(np.std(accs, ddof=1))


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette of ``labels`` (n,) given their pairwise ``distances`` (n, n); NaN with one cluster."""
    if not 1 < len(np.unique(labels)) < len(labels):
        return float("nan")
    return float(silhouette_score(distances, labels, metric="precomputed"))


def cluster_all(reps: dict[str, np.ndarray], labels: np.ndarray, num_clusters: int, *, n_init: int, max_iter: int,
                seed: int, noise_seeds: int) -> dict:
    """Every clustering variant's metrics as ``{variant}_{metric}``, plus ``acc_max`` and
    ``acc_max_variant``; for the mixture head its diagnostics (``mixture_diagnostics``); and with
    ``noise_seeds`` > 1, the within-model noise ``{variant}_acc_seed_std`` of each of
    ``mixem.scores.NOISE_VARIANTS`` the head has (``seed_spread``).

    Silhouettes use one fixed subsample of at most ``SILHOUETTE_ROWS`` rows (the same rows for every
    variant and every run on the same images), Euclidean in the clustered space; argmax pi's is
    measured on the L2-normalised z."""
    results: dict[str, float | str] = {}
    sample = np.arange(len(labels))
    if len(sample) > SILHOUETTE_ROWS:
        sample = np.sort(np.random.default_rng(0).choice(len(labels), SILHOUETTE_ROWS, replace=False))
    distances: dict[int, np.ndarray] = {}  # one matrix per clustered representation, shared by its variants
    for variant, (predicted, x) in clusterings(reps, num_clusters, n_init=n_init, max_iter=max_iter,
                                               seed=seed).items():
        for metric, value in cluster_metrics(labels, predicted).items():
            results[f"{variant}_{metric}"] = value
        if id(x) not in distances:
            distances[id(x)] = pairwise_distances(x[sample])
        results[f"{variant}_silhouette"] = silhouette(distances[id(x)], predicted[sample])
    if "pi" in reps:
        results.update(mixture_diagnostics(reps["pi"], labels))
    for variant in NOISE_VARIANTS:
        if noise_seeds > 1 and f"{variant}_acc" in results:
            results[f"{variant}_acc_seed_std"] = seed_spread(reps, labels, variant, num_clusters, n_init=n_init,
                                                             max_iter=max_iter, seed=seed, seeds=noise_seeds)
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
    noise_seeds: int,
    device,
) -> dict:
    """Representations of ``images`` under ``model``, clustered every way; see ``cluster_all``."""
    reps = representations(model, images, batch_size, device)
    return cluster_all(reps, labels.numpy(), num_clusters, n_init=n_init, max_iter=max_iter, seed=seed,
                       noise_seeds=noise_seeds)


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
