"""Clustering metrics: Hungarian accuracy, NMI and ARI (as in SCAN's ``hungarian_evaluate``)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def clustering_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of samples whose cluster maps to their class under the best one-to-one matching.

    Works when the number of clusters differs from the number of classes: surplus clusters
    match no class and their samples count as wrong.
    """
    counts = contingency_matrix(y_true, y_pred)  # (classes, clusters)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(y_true))


def cluster_metrics(y_true, y_pred) -> dict[str, float]:
    """``{"acc", "nmi", "ari"}`` of a clustering ``y_pred`` against labels ``y_true`` (both (N,) ints)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        "acc": clustering_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
    }
