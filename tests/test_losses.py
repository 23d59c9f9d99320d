"""Each loss against a NumPy transcription of its definition and against closed-form values."""

import math

import numpy as np
import pytest
import torch

from mixem.losses import (
    associative_loss,
    instance_entropy,
    marginal_entropy,
    max_prob_loss,
    mix_embeddings,
    mixem_loss,
    nt_xent,
)
from mixem.model import MixtureHead


def nt_xent_reference(z_a: np.ndarray, z_b: np.ndarray, temperature: float) -> float:
    """SimCLR's Algorithm 1, anchor by anchor."""
    z = np.concatenate([z_a, z_b])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z_a)
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        sims = np.array([z[i] @ z[j] / temperature for j in range(2 * n)])
        denominator = sum(np.exp(sims[j]) for j in range(2 * n) if j != i)
        losses.append(-np.log(np.exp(sims[positive]) / denominator))
    return float(np.mean(losses))


def associative_reference(z: np.ndarray, pi: np.ndarray) -> tuple[float, float]:
    assignment = pi.argmax(axis=1)
    means = {c: z[assignment == c].mean(axis=0) for c in np.unique(assignment)}
    pull = np.mean([np.linalg.norm(z[assignment == c] - m, axis=1).mean() for c, m in means.items()])
    pairs = [np.linalg.norm(means[a] - means[b]) for a in means for b in means if a != b]
    return float(pull), float(-np.mean(pairs)) if pairs else 0.0


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_nt_xent_matches_reference(rng):
    z_a, z_b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    got = nt_xent(torch.tensor(z_a), torch.tensor(z_b), temperature=0.5).item()
    assert got == pytest.approx(nt_xent_reference(z_a, z_b, 0.5), rel=1e-6)


def test_nt_xent_of_identical_constant_views_is_log_2n_minus_1():
    z = torch.ones(5, 3)
    assert nt_xent(z, z, 0.5).item() == pytest.approx(math.log(2 * 5 - 1), rel=1e-6)


def test_nt_xent_is_lower_for_matching_views(rng):
    z = torch.tensor(rng.normal(size=(8, 16)))
    assert nt_xent(z, z + 0.01, 0.5) < nt_xent(z, torch.tensor(rng.normal(size=(8, 16))), 0.5)


def test_marginal_entropy_closed_forms():
    k = 7
    assert marginal_entropy(torch.full((4, k), 1 / k)).item() == pytest.approx(math.log(k), rel=1e-5)
    assert marginal_entropy(torch.eye(k)).item() == pytest.approx(math.log(k), rel=1e-5)  # balanced one-hots
    assert marginal_entropy(torch.eye(k)[[0, 0, 0]]).item() == pytest.approx(0.0, abs=1e-6)


def test_instance_entropy_closed_forms(rng):
    k = 5
    assert instance_entropy(torch.eye(k)).item() == pytest.approx(0.0, abs=1e-6)
    assert instance_entropy(torch.full((3, k), 1 / k)).item() == pytest.approx(math.log(k), rel=1e-5)
    pi = rng.dirichlet(np.ones(k), size=9)
    expected = np.mean([-(row * np.log(row)).sum() for row in pi])
    assert instance_entropy(torch.tensor(pi)).item() == pytest.approx(expected, rel=1e-6)


def test_max_prob_loss(rng):
    pi = rng.dirichlet(np.ones(4), size=10)
    assert max_prob_loss(torch.tensor(pi)).item() == pytest.approx(np.mean(1 - pi.max(axis=1)), rel=1e-9)
    assert max_prob_loss(torch.eye(4)).item() == 0.0


@pytest.mark.parametrize("k", [1, 3, 8])
def test_associative_loss_matches_reference(rng, k):
    z, pi = rng.normal(size=(20, 5)), rng.dirichlet(np.ones(k), size=20)
    pull, push = associative_loss(torch.tensor(z), torch.tensor(pi))
    ref_pull, ref_push = associative_reference(z, pi)
    assert pull.item() == pytest.approx(ref_pull, rel=1e-6)
    assert push.item() == pytest.approx(ref_push, rel=1e-6, abs=1e-12)


def test_associative_loss_skips_empty_components():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    pi = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 0, 1.0, 0]])  # components 1 and 3 empty
    pull, push = associative_loss(z, pi)
    # Component 0: mean (1, 0), distances 1 and 1; component 2: one member, distance 0.
    assert pull.item() == pytest.approx(0.5)
    assert push.item() == pytest.approx(-math.hypot(1, 3))


def test_associative_gradient_is_finite_when_means_coincide():
    z = torch.zeros(4, 3, requires_grad=True)
    pi = torch.eye(2).repeat(2, 1)
    pull, push = associative_loss(z, pi)
    (pull + push).backward()
    assert torch.isfinite(z.grad).all()


def test_mix_embeddings_is_weighted_sum_of_unit_vectors():
    embeddings = torch.tensor([[[3.0, 0.0], [0.0, 5.0]]])
    pi = torch.tensor([[0.25, 0.75]])
    assert torch.allclose(mix_embeddings(pi, embeddings), torch.tensor([[0.25, 0.75]]))


def test_mixem_loss_combines_weighted_terms(rng):
    pi_a, pi_b = (torch.tensor(rng.dirichlet(np.ones(3), size=6)) for _ in range(2))
    z_a, z_b = (torch.tensor(rng.normal(size=(6, 4))) for _ in range(2))
    weights = dict(temperature=0.5, w_entropy=2.0, w_instance=0.1, w_pull=0.1, w_push=0.05)
    terms = mixem_loss(pi_a, z_a, pi_b, z_b, **weights)
    assert terms["marginal_entropy"].item() == pytest.approx((marginal_entropy(pi_a) + marginal_entropy(pi_b)).item())
    expected = (
        terms["contrastive"]
        - 2.0 * terms["marginal_entropy"]
        + 0.1 * terms["instance"]
        + 0.1 * terms["pull"]
        + 0.05 * terms["push"]
    )
    assert terms["total"].item() == pytest.approx(expected.item())
    code_form = mixem_loss(pi_a, z_a, pi_b, z_b, instance_form="max_prob")
    assert code_form["instance"].item() == pytest.approx((max_prob_loss(pi_a) + max_prob_loss(pi_b)).item())
    off = mixem_loss(pi_a, z_a, pi_b, z_b, w_entropy=0, w_instance=0, w_pull=0, w_push=0)
    assert off["total"].item() == pytest.approx(off["contrastive"].item())


def test_simclr_head_has_only_the_contrastive_term(rng):
    z_a, z_b = (torch.tensor(rng.normal(size=(6, 4))) for _ in range(2))
    terms = mixem_loss(None, z_a, None, z_b, w_entropy=0, w_instance=0, w_pull=0, w_push=0)
    assert terms["total"].item() == pytest.approx(nt_xent(z_a, z_b).item())
    assert terms["pull"].item() == 0.0


def test_total_loss_falls_over_a_few_steps():
    torch.manual_seed(0)
    head = MixtureHead(in_features=16, num_components=4, hidden_dim=32, embed_dim=8)
    features = torch.randn(64, 16)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        views = [features + 0.1 * torch.randn_like(features) for _ in range(2)]
        outs = [head(v) for v in views]
        pis = [logits.softmax(dim=1) for logits, _ in outs]
        zs = [mix_embeddings(pi, e) for pi, (_, e) in zip(pis, outs, strict=True)]
        return mixem_loss(pis[0], zs[0], pis[1], zs[1])["total"]

    torch.manual_seed(1)
    first = loss().item()
    for _ in range(30):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    torch.manual_seed(1)
    assert loss().item() < first - 0.1
