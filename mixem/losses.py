"""The MIX'EM objective, one pure function per term (Varamesh & Tuytelaars, ACCV 2020, Sec. 3).

Shapes: ``N`` rows (images), ``K`` mixture components, ``D`` embedding dimensions.
No device moves, logging or config reads here: ``mixem_loss`` takes its weights as arguments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent of SimCLR (Chen et al. 2020) with cosine similarity, mean over the 2N anchors.

    ``z_a``, ``z_b``: (N, D), row i of each is a view of image i. For identical views the
    positive is as similar as the negatives, and the loss equals ``log(2N - 1)``.
    """
    n = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # an anchor is never its own negative
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)


def marginal_entropy(pi: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of the batch mean of ``pi`` (N, K); ``log K`` when every component is used equally.

    The objective subtracts it (term (i)), so minimising the loss spreads images over components.
    """
    p_bar = pi.mean(dim=0)
    return -(p_bar * torch.log(p_bar + _EPS)).sum()


def instance_entropy(pi: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the entropy in nats of each row of ``pi`` (N, K): the paper's term (ii).

    Zero when every image commits to one component.
    """
    return -(pi * torch.log(pi + _EPS)).sum(dim=1).mean()


def max_prob_loss(pi: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - max_k pi``, the authors' code variant of term (ii); ``pi``: (N, K)."""
    return (1.0 - pi.max(dim=1).values).mean()


def associative_loss(z: torch.Tensor, pi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Term (iii): pull embeddings to their component mean, push component means apart.

    ``z``: (N, D) embeddings; ``pi``: (N, K) mixing probabilities. Members of component k are the
    rows with ``argmax pi == k`` (no gradient flows through the assignment).
    Returns ``(pull, push)``: ``pull`` is the mean over non-empty components of the mean L2
    distance of members to their component mean; ``push`` is minus the mean L2 distance between
    means of distinct non-empty components over ordered pairs (0 with fewer than two).
    All components are handled in one batched operation.
    """
    k = pi.shape[1]
    members = F.one_hot(pi.argmax(dim=1), k).to(z.dtype)  # (N, K)
    counts = members.sum(dim=0)  # (K,)
    occupied = counts > 0
    means = (members.T @ z) / counts.clamp(min=1).unsqueeze(1)  # (K, D)
    distance_to_own_mean = (z - members @ means).norm(dim=1)  # (N,)
    mean_distance_per_component = (members.T @ distance_to_own_mean) / counts.clamp(min=1)
    pull = mean_distance_per_component[occupied].mean()

    occupied_means = means[occupied]
    m = occupied_means.shape[0]
    if m < 2:
        return pull, z.new_zeros(())
    # Explicit differences rather than torch.cdist: cdist's gradient is NaN at zero distance.
    diffs = occupied_means.unsqueeze(0) - occupied_means.unsqueeze(1)
    off_diagonal = ~torch.eye(m, dtype=torch.bool, device=z.device)
    push = -diffs[off_diagonal].norm(dim=1).mean()
    return pull, push


def mix_embeddings(pi: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """The mixed embedding ``z = sum_k pi_k * normalize(e_k)``; ``pi``: (N, K), ``embeddings``: (N, K, D) -> (N, D)."""
    return torch.einsum("nk,nkd->nd", pi, F.normalize(embeddings, dim=2))


def mixem_loss(
    pi_a: torch.Tensor | None,
    z_a: torch.Tensor,
    pi_b: torch.Tensor | None,
    z_b: torch.Tensor,
    *,
    temperature: float = 0.5,
    w_entropy: float = 2.0,
    w_instance: float = 0.1,
    instance_form: str = "entropy",
    w_pull: float = 0.1,
    w_push: float = 0.05,
) -> dict[str, torch.Tensor]:
    """The whole objective for two views a, b; each extra term is summed over both views, as in the
    authors' code.

    ``pi_*``: (N, K) mixing probabilities, or None for the plain SimCLR head (extra terms are 0).
    ``z_*``: (N, D) embeddings fed to NT-Xent. Returns ``total`` and every term, unweighted,
    so logging needs no second computation. A weight of 0 switches its term off.
    """
    terms = {"contrastive": nt_xent(z_a, z_b, temperature)}
    zero = z_a.new_zeros(())
    if pi_a is None:
        terms.update(marginal_entropy=zero, instance=zero, pull=zero, push=zero)
    else:
        instance_term = {"entropy": instance_entropy, "max_prob": max_prob_loss}[instance_form]
        views = ((pi_a, z_a), (pi_b, z_b))
        terms["marginal_entropy"] = sum(marginal_entropy(pi) for pi, _ in views)
        terms["instance"] = sum(instance_term(pi) for pi, _ in views)
        pulls, pushes = zip(*(associative_loss(z, pi) for pi, z in views), strict=True)
        terms["pull"] = sum(pulls)
        terms["push"] = sum(pushes)
    terms["total"] = (
        terms["contrastive"]
        - w_entropy * terms["marginal_entropy"]
        + w_instance * terms["instance"]
        + w_pull * terms["pull"]
        + w_push * terms["push"]
    )
    return terms
