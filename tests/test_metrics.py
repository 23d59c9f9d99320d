import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from mixem.metrics import cluster_metrics


def test_relabelled_perfect_clustering_has_accuracy_one():
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([5, 5, 3, 3, 9, 9, 9])
    assert cluster_metrics(y_true, y_pred) == pytest.approx({"acc": 1.0, "nmi": 1.0, "ari": 1.0})


def test_accuracy_uses_the_best_one_to_one_matching():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([1, 1, 0, 0, 0, 0])  # best matching: 1->0 (2 right), 0->1 (3 right)
    assert cluster_metrics(y_true, y_pred)["acc"] == pytest.approx(5 / 6)


def test_more_clusters_than_classes():
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 2, 2, 1, 1])  # surplus cluster 2 matches no class
    assert cluster_metrics(y_true, y_pred)["acc"] == pytest.approx(4 / 6)


def test_fewer_clusters_than_classes():
    y_true = np.array([0, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 1])
    assert cluster_metrics(y_true, y_pred)["acc"] == pytest.approx(3 / 4)


def test_nmi_and_ari_agree_with_sklearn():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 6, 200)
    got = cluster_metrics(y_true, y_pred)
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(y_true, y_pred))
    assert got["ari"] == pytest.approx(adjusted_rand_score(y_true, y_pred))
