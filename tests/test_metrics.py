import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from mixem.evaluate import METRIC_KEYS, VARIANTS, cluster_all, component_mean_init
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


def test_component_mean_init_takes_the_most_populated_components():
    x = np.array([[0.0], [1.0], [10.0], [11.0], [12.0], [50.0]])
    assignment = np.array([3, 3, 7, 7, 7, 1])
    centres = component_mean_init(x, assignment, num_clusters=2, seed=0)
    assert centres.tolist() == [[11.0], [0.5]]


def test_component_mean_init_fills_missing_centres():
    x = np.arange(10.0).reshape(-1, 1)
    centres = component_mean_init(x, np.zeros(10, dtype=int), num_clusters=3, seed=0)
    assert centres.shape == (3, 1) and centres[0, 0] == pytest.approx(4.5)


def test_cluster_all_scores_every_variant_on_separable_data():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    centres = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    h = centres[labels] + rng.normal(scale=0.3, size=(90, 3))
    pi = np.eye(3)[(labels + 1) % 3]  # components are a relabelling of the classes
    reps = {"h": h, "z": h[:, :2], "dom": h, "pi": pi}
    results = cluster_all(reps, labels, num_clusters=3, n_init=3, seed=0)
    assert set(METRIC_KEYS) <= set(results)
    assert results["argmax_pi_acc"] == 1.0 and results["compinit_h_raw_acc"] == 1.0
    assert results["acc_max"] == 1.0 and results["acc_max_variant"] in VARIANTS


def test_cluster_all_without_pi_has_only_kmeans_variants():
    rng = np.random.default_rng(1)
    reps = {"h": rng.normal(size=(40, 4)), "z": rng.normal(size=(40, 2))}
    results = cluster_all(reps, rng.integers(0, 2, 40), num_clusters=2, n_init=2, seed=0)
    variants = {key.rsplit("_", 1)[0] for key in results if key.endswith("_acc") and key != "acc_max"}
    assert variants == {"kmeans_h_raw", "kmeans_h_l2", "kmeans_z_raw", "kmeans_z_l2"}
