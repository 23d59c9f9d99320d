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
    """The definition in MIXEM.md, component by component: K zero vectors labelled 0..K-1 join the
    batch; pull averages over all K components the mean distance of members to their mean; push is
    minus the mean distance over the K^2 - K ordered pairs of distinct means."""
    k = pi.shape[1]
    assignment = pi.argmax(axis=1)
    means, pulls = [], []
    for c in range(k):
        members = np.concatenate([z[assignment == c], np.zeros((1, z.shape[1]))])
        mean = members.mean(axis=0)
        means.append(mean)
        pulls.append(np.linalg.norm(members - mean, axis=1).mean())
    pairs = [np.linalg.norm(means[a] - means[b]) for a in range(k) for b in range(k) if a != b]
    return float(np.sum(pulls) / k), float(-np.sum(pairs) / (k * k - k)) if k > 1 else 0.0


def authors_associative(z: torch.Tensor, pi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A transcription of the authors' train.py (MIXEM.mixem_loss, weights left out), loops and all."""
    n_comps = pi.shape[1]
    zeroz_x = torch.zeros((n_comps, z.shape[1]), dtype=z.dtype)
    zeroz_y = torch.arange(n_comps)
    pi_max = torch.max(pi.detach(), dim=1)[1]
    x = torch.cat((z, zeroz_x))
    y = torch.cat((pi_max, zeroz_y))
    means = torch.stack([x[y == c].mean(dim=0) for c in range(n_comps)], dim=0)
    pull = torch.stack([torch.mean(torch.linalg.norm(x[y == c] - means[c], ord=2, dim=1)) for c in range(n_comps)])
    pull_loss = pull.sum() / n_comps
    m1 = means.repeat(means.size(0), 1)  # their PairEnum
    m2 = means.repeat(1, means.size(0)).view(-1, means.size(1))
    push = torch.linalg.norm(m1 - m2, ord=2, dim=1)
    push_loss = -1 * push.sum() / (n_comps**2 - n_comps)
    return pull_loss, push_loss


WEIGHTS = dict(temperature=0.5, w_entropy=2.0, w_instance=0.1, instance_form="max_prob", w_pull=0.1, w_push=0.05)


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


@pytest.mark.parametrize("k", [2, 3, 8, 10, 40])
def test_associative_loss_matches_the_definition_and_the_authors_code(rng, k):
    # 20 rows over up to 40 components, the last one never chosen: always some empty components.
    z, pi = rng.normal(size=(20, 5)), rng.dirichlet(np.ones(k) * 0.3, size=20)
    pi[:, -1] = 0.0
    pi /= pi.sum(axis=1, keepdims=True)
    assert len(np.unique(pi.argmax(axis=1))) < k
    pull, push = associative_loss(torch.tensor(z), torch.tensor(pi))
    ref_pull, ref_push = associative_reference(z, pi)
    assert pull.item() == pytest.approx(ref_pull, rel=1e-6)
    assert push.item() == pytest.approx(ref_push, rel=1e-6)
    authors_pull, authors_push = authors_associative(torch.tensor(z), torch.tensor(pi))
    assert pull.item() == pytest.approx(authors_pull.item(), rel=1e-6)
    assert push.item() == pytest.approx(authors_push.item(), rel=1e-6)


def test_associative_loss_by_hand_with_empty_components():
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    pi = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])  # component 1 is empty
    pull, push = associative_loss(z, pi)
    # Component 0: members (0,0), (3,0) and its zero vector: mean (1, 0), distances 1, 2, 1.
    # Component 1: only its zero vector: mean (0, 0), distance 0.
    # Component 2: (0, 4) and its zero vector: mean (0, 2), distances 2 and 2.
    assert pull.item() == pytest.approx((4 / 3 + 0 + 2) / 3)
    # Means (1, 0), (0, 0), (0, 2): distances 1, sqrt(5), 2, each pair counted both ways, over 3^2 - 3.
    assert push.item() == pytest.approx(-2 * (1 + math.sqrt(5) + 2) / 6)


def test_associative_gradient_matches_the_authors_code(rng):
    z, pi = rng.normal(size=(16, 4)), rng.dirichlet(np.ones(6) * 0.5, size=16)
    grads = []
    for loss in (associative_loss, authors_associative):
        zt = torch.tensor(z, requires_grad=True)
        pull, push = loss(zt, torch.tensor(pi))
        (0.1 * pull + 0.05 * push).backward()
        grads.append(zt.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-6, atol=1e-12)


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
    pi_a, pi_b = (rng.dirichlet(np.ones(3), size=6) for _ in range(2))
    z_a, z_b = (rng.normal(size=(6, 4)) for _ in range(2))
    terms = mixem_loss(*map(torch.tensor, (pi_a, z_a, pi_b, z_b)), **WEIGHTS)
    # Each term from its definition, in NumPy, not from what the function returned.
    expected = {
        "contrastive": nt_xent_reference(z_a, z_b, 0.5),
        "marginal_entropy": sum(-(p.mean(0) * np.log(p.mean(0))).sum() for p in (pi_a, pi_b)),
        "instance": sum(np.mean(1 - p.max(axis=1)) for p in (pi_a, pi_b)),
        "pull": sum(associative_reference(z, p)[0] for z, p in ((z_a, pi_a), (z_b, pi_b))),
        "push": sum(associative_reference(z, p)[1] for z, p in ((z_a, pi_a), (z_b, pi_b))),
    }
    expected["total"] = (
        expected["contrastive"]
        - 2.0 * expected["marginal_entropy"]
        + 0.1 * expected["instance"]
        + 0.1 * expected["pull"]
        + 0.05 * expected["push"]
    )
    assert {name: value.item() for name, value in terms.items()} == pytest.approx(expected, rel=1e-6)
    paper_form = mixem_loss(*map(torch.tensor, (pi_a, z_a, pi_b, z_b)), **{**WEIGHTS, "instance_form": "entropy"})
    paper_instance = sum(np.mean(-(p * np.log(p)).sum(axis=1)) for p in (pi_a, pi_b))
    assert paper_form["instance"].item() == pytest.approx(paper_instance, rel=1e-6)
    off = {**WEIGHTS, "w_entropy": 0, "w_instance": 0, "w_pull": 0, "w_push": 0}
    off_terms = mixem_loss(*map(torch.tensor, (pi_a, z_a, pi_b, z_b)), **off)
    assert off_terms["total"].item() == pytest.approx(expected["contrastive"], rel=1e-6)


def test_simclr_head_has_only_the_contrastive_term(rng):
    z_a, z_b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    off = {**WEIGHTS, "w_entropy": 0, "w_instance": 0, "w_pull": 0, "w_push": 0}
    terms = mixem_loss(None, torch.tensor(z_a), None, torch.tensor(z_b), **off)
    assert terms["total"].item() == pytest.approx(nt_xent_reference(z_a, z_b, 0.5), rel=1e-6)
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
        return mixem_loss(pis[0], zs[0], pis[1], zs[1], **WEIGHTS)["total"]

    torch.manual_seed(1)
    first = loss().item()
    for _ in range(30):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    torch.manual_seed(1)
    assert loss().item() < first - 0.1
