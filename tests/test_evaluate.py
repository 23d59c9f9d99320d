"""The evaluation: every clustering variant as the authors' cluster_eval, silhouettes, the validation loss."""

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import normalize as l2_normalize

import mixem.evaluate as evaluate_module
from mixem.config import Config
from mixem.evaluate import cluster_all, component_mean_init, representations, validation_loss
from mixem.model import MixemModel
from mixem.scores import METRIC_KEYS, VALIDATION_KEYS, VARIANTS, is_label_free, metric_mode

KMEANS = dict(n_init=3, max_iter=10, seed=0, noise_seeds=0)


def separable(rng, n_per_class=30):
    labels = np.repeat(np.arange(3), n_per_class)
    centres = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    h = centres[labels] + rng.normal(scale=0.3, size=(len(labels), 3))
    pi = np.eye(3)[(labels + 1) % 3]  # components are a relabelling of the classes
    return {"h": h, "z": h[:, :2], "dom": h, "pi": pi}, labels


def test_component_mean_init_takes_the_most_populated_components_when_there_are_more():
    x = np.array([[0.0], [1.0], [10.0], [11.0], [12.0], [50.0]])
    assignment = np.array([3, 3, 7, 7, 7, 1])
    centres = component_mean_init(x, assignment, num_components=8, num_clusters=2, seed=0)
    assert centres.tolist() == [[11.0], [0.5]]


def test_component_mean_init_is_each_components_mean_and_a_random_point_for_an_empty_one():
    """As the authors' cat_avg_X with K = classes: component k's mean in row k, and for a component no
    image picked, a point drawn uniformly from [x.min(), x.max()] in every dimension (seeded)."""
    x = np.array([[0.0, 1.0], [2.0, 3.0], [10.0, 10.0], [-4.0, 20.0]])
    assignment = np.array([2, 2, 0, 0])
    centres = component_mean_init(x, assignment, num_components=3, num_clusters=3, seed=5)
    assert centres[0].tolist() == [3.0, 15.0] and centres[2].tolist() == [1.0, 2.0]
    assert ((-4.0 <= centres[1]) & (centres[1] <= 20.0)).all()
    assert centres[1].tolist() == np.random.default_rng(5).uniform(-4.0, 20.0, size=(3, 2))[1].tolist()
    again = component_mean_init(x, assignment, num_components=3, num_clusters=3, seed=6)
    assert again[1].tolist() != centres[1].tolist()  # the random centre comes from the seed
    few = component_mean_init(x, np.zeros(4, dtype=int), num_components=6, num_clusters=3, seed=0)
    assert few.shape == (3, 2) and few[0].tolist() == [2.0, 8.5]  # fewer occupied than clusters: random rows


def test_cluster_all_scores_every_variant_on_separable_data():
    reps, labels = separable(np.random.default_rng(0))
    results = cluster_all(reps, labels, num_clusters=3, **KMEANS)
    assert set(METRIC_KEYS) <= set(results)
    assert results["argmax_pi_acc"] == 1.0 and results["compinit_h_raw_acc"] == 1.0
    assert results["acc_max"] == 1.0 and results["acc_max_variant"] in VARIANTS
    # Well separated clusters have a silhouette near 1.
    assert results["kmeans_h_raw_silhouette"] > 0.8


def test_cluster_all_without_pi_has_only_kmeans_variants():
    rng = np.random.default_rng(1)
    reps = {"h": rng.normal(size=(40, 4)), "z": rng.normal(size=(40, 2))}
    results = cluster_all(reps, rng.integers(0, 2, 40), num_clusters=2, **KMEANS)
    variants = {key.rsplit("_", 1)[0] for key in results if key.endswith("_acc") and key != "acc_max"}
    assert variants == {"kmeans_h_raw", "kmeans_h_l2", "kmeans_z_raw", "kmeans_z_l2"}


def test_every_kmeans_uses_the_authors_max_iter_and_the_seed(monkeypatch):
    calls = []
    real = evaluate_module.KMeans

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "KMeans", spy)
    reps, labels = separable(np.random.default_rng(0))
    cluster_all(reps, labels, num_clusters=3, n_init=3, max_iter=7, seed=11, noise_seeds=0)
    assert len(calls) == 12  # k-means++ and component init, for 3 representations x 2 norms
    assert all(call["max_iter"] == 7 and call["random_state"] == 11 for call in calls)


def test_few_iterations_keep_the_initialisation_visible():
    # Two elongated blobs: K-means from a bad start needs many iterations to find them.
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 200)
    x = np.stack([rng.normal(size=400) * 10, labels * 3 + rng.normal(size=400) * 0.3], axis=1)
    bad_components = (x[:, 0] > 0).astype(int)  # a split along the wrong axis
    reps = {"h": x, "z": x, "dom": x, "pi": np.eye(2)[bad_components]}
    short = cluster_all(reps, labels, num_clusters=2, n_init=1, max_iter=1, seed=0, noise_seeds=0)
    long = cluster_all(reps, labels, num_clusters=2, n_init=1, max_iter=300, seed=0, noise_seeds=0)
    assert short["compinit_h_raw_acc"] < long["compinit_h_raw_acc"]


def test_silhouette_on_a_fixed_subsample(monkeypatch):
    monkeypatch.setattr(evaluate_module, "SILHOUETTE_ROWS", 40)
    reps, labels = separable(np.random.default_rng(2))
    first = cluster_all(reps, labels, num_clusters=3, **KMEANS)
    second = cluster_all(reps, labels, num_clusters=3, **KMEANS)
    assert first["kmeans_z_l2_silhouette"] == second["kmeans_z_l2_silhouette"]
    sample = np.sort(np.random.default_rng(0).choice(len(labels), 40, replace=False))
    # argmax pi is scored in the L2-normalised z space, on the same 40 rows.
    expected = silhouette_score(l2_normalize(reps["z"])[sample], reps["pi"].argmax(axis=1)[sample])
    assert first["argmax_pi_silhouette"] == pytest.approx(expected)


def test_one_cluster_has_no_silhouette():
    reps, labels = separable(np.random.default_rng(4))
    reps["pi"] = np.eye(3)[np.zeros(len(labels), dtype=int)]  # every image in component 0
    results = cluster_all(reps, labels, num_clusters=3, **KMEANS)
    assert np.isnan(results["argmax_pi_silhouette"])


def test_representations_are_float32_and_dom_is_the_normalised_dominant_embedding():
    torch.manual_seed(0)
    config = Config.for_dataset("digits", {"hidden_dim": 16, "num_components": 4})
    model = MixemModel(config.model, 1, 8).train()
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    reps = representations(model, images, batch_size=4, device=torch.device("cpu"))
    assert model.training  # restored
    assert set(reps) == {"h", "z", "dom", "pi"} and reps["dom"].shape == (10, config.model.embed_dim)
    with torch.no_grad():
        out = model.eval()(evaluate_module.normalize(evaluate_module.to_float(images)))
    dominant = out["pi"].argmax(dim=1)
    expected = torch.nn.functional.normalize(out["embeddings"][torch.arange(10), dominant], dim=1)
    assert np.allclose(reps["dom"], expected.numpy(), atol=1e-6)
    assert np.allclose(np.linalg.norm(reps["dom"], axis=1), 1.0)


def test_validation_loss_is_the_same_whatever_the_global_seed():
    config = Config.for_dataset("digits", {"hidden_dim": 16})
    torch.manual_seed(0)
    model = MixemModel(config.model, 1, 8)
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    weights = {name: getattr(config.loss, name) for name in vars(config.loss)}
    values = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        values.append(validation_loss(model, images, config.augment, weights, batch_size=16, device="cpu"))
    assert values[0] == values[1] and set(values[0]) == set(VALIDATION_KEYS)
    assert model.training
    # Two whole batches of 16 out of 40 images; the total is the weighted sum of the terms.
    v = values[0]
    total = (v["val_contrastive"] - 2.0 * v["val_marginal_entropy"] + 0.1 * v["val_instance"] + 0.1 * v["val_pull"]
             + 0.05 * v["val_push"])
    assert v["val_loss"] == pytest.approx(total, rel=1e-5)


def test_metric_directions_and_label_freedom():
    assert metric_mode("compinit_z_l2_acc") == "max" and metric_mode("kmeans_h_raw_silhouette") == "max"
    assert metric_mode("val_loss") == "min" and metric_mode("val_contrastive") == "min"
    assert metric_mode("val_marginal_entropy") == "max"  # the objective subtracts it
    assert is_label_free("val_loss") and is_label_free("compinit_z_l2_silhouette")
    assert not is_label_free("acc_max") and not is_label_free("compinit_z_l2_nmi")
    with pytest.raises(KeyError):
        metric_mode("accuracy")


def test_the_headline_clustering_starts_from_the_component_means_of_the_normalised_z():
    """compinit_z_l2 is K-means on the L2-normalised z from the means of that same normalised z over
    argmax pi's components: not k-means++, and not the means of the raw z. With one iteration the start
    shows in the result, so each wrong version gives other labels here."""
    rng = np.random.default_rng(7)
    z = rng.normal(size=(300, 4)) * rng.uniform(0.2, 5.0, size=(300, 1))  # norms that differ a lot
    pi = rng.dirichlet(np.ones(4), size=300)
    found = evaluate_module.clusterings({"h": z, "z": z, "pi": pi}, 4, n_init=3, max_iter=1, seed=0)
    labels, clustered = found["compinit_z_l2"]
    x = z / np.linalg.norm(z, axis=1, keepdims=True)
    assert np.allclose(clustered, x)
    assignment = pi.argmax(axis=1)

    def one_step(init):
        from sklearn.cluster import KMeans

        return KMeans(4, init=init, n_init=1, max_iter=1, random_state=0).fit(x).labels_

    means = np.stack([x[assignment == k].mean(axis=0) for k in range(4)])
    raw_means = np.stack([z[assignment == k].mean(axis=0) for k in range(4)])
    assert (labels == one_step(means)).all()
    assert not (labels == one_step(raw_means)).all()  # means taken before normalising: other labels
    kmeanspp = found["kmeans_z_l2"][0]
    assert not (labels == kmeanspp).all() and not (labels == one_step("k-means++")).all()


def test_mixture_diagnostics_say_how_class_like_the_components_are():
    labels = np.array([0] * 50 + [1] * 50)
    # 99 images split between components 0 and 1 (component 0: 45 of class 0 and 5 of class 1), one image in
    # component 2 (1%: used), none in component 3.
    assignment = np.array([0] * 45 + [1] * 5 + [0] * 5 + [1] * 44 + [2])
    pi = np.full((100, 4), 0.1)
    pi[np.arange(100), assignment] = 0.7
    diagnostics = evaluate_module.mixture_diagnostics(pi, labels)
    assert diagnostics["pi_max_mean"] == pytest.approx(0.7)
    assert diagnostics["components_used"] == 3
    assert diagnostics["component_purity"] == pytest.approx((45 + 44 + 1) / 100)
    assert is_label_free("pi_max_mean") and is_label_free("components_used") and not is_label_free("component_purity")


def test_within_model_noise_is_the_spread_of_acc_over_kmeans_seeds():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    z = rng.normal(size=(200, 3))  # no structure: k-means++ lands differently for each seed
    pi = np.eye(3)[labels]  # every component used: component init does not depend on the seed
    reps = {"h": z, "z": z, "pi": pi}
    results = cluster_all(reps, labels, num_clusters=3, n_init=1, max_iter=10, seed=0, noise_seeds=4)
    assert results["kmeans_z_l2_acc_seed_std"] > 0 and results["compinit_z_l2_acc_seed_std"] == 0
    accs = [cluster_all(reps, labels, num_clusters=3, n_init=1, max_iter=10, seed=s, noise_seeds=0)["kmeans_z_l2_acc"]
            for s in range(4)]
    assert results["kmeans_z_l2_acc_seed_std"] == pytest.approx(np.std(accs, ddof=1))
    without = cluster_all(reps, labels, num_clusters=3, n_init=1, max_iter=10, seed=0, noise_seeds=0)
    assert "kmeans_z_l2_acc_seed_std" not in without
    simclr = cluster_all({"h": z, "z": z}, labels, num_clusters=3, n_init=1, max_iter=10, seed=0, noise_seeds=4)
    assert "kmeans_z_l2_acc_seed_std" in simclr and "compinit_z_l2_acc_seed_std" not in simclr
    assert "pi_max_mean" not in simclr
