"""The MIX'EM objective, one pure function per term (Varamesh & Tuytelaars, ACCV 2020, Sec. 3).

Shapes: ``N`` rows (images), ``K`` mixture components, ``D`` embedding dimensions.
No device moves, logging or config reads here: ``mixem_loss`` takes its weights as arguments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of SimCLR (Chen et al. 2020) with cosine similarity, mean over the 2N anchors.

    ``z_a``, ``z_b``: (N, D), row i of each is a view of image i. For identical views the
    positive is as similar as the negatives, and the loss equals ``log(2N - 1)``.
    """
    n = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # an anchor is never its own negative
    # Row i's positive is row i + N (mod 2N); made on the device, so no host-to-device copy.
    positives = torch.arange(2 * n, device=z.device).add_(n).remainder_(2 * n)
    return F.cross_entropy(logits, positives)


def marginal_entropy(pi: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of the batch mean of ``pi`` (N, K); ``log K`` when every component is used equally.

    The objective subtracts it (term (i)), so minimising the loss spreads images over components.
    """
    p_bar = pi.mean(dim=0)
    return -(p_bar * torch.log(p_bar + _EPS)).sum()


def instance_entropy(pi: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the entropy in nats of each row of ``pi`` (N, K): term (ii) as the paper
    writes it (``--instance-form entropy``). Zero when every image commits to one component.
    """
    return -(pi * torch.log(pi + _EPS)).sum(dim=1).mean()


def max_prob_loss(pi: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - max_k pi`` over rows of ``pi`` (N, K): term (ii) as the authors' code computes it
    (``pimax_loss``), the form behind the published numbers and the default (``--instance-form max_prob``)."""
    return (1.0 - pi.max(dim=1).values).mean()


def associative_loss(z: torch.Tensor, pi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Term (iii) in the authors' form: pull embeddings to their component mean, push the means apart.

    ``z``: (N, D) embeddings; ``pi``: (N, K) mixing probabilities. Image i belongs to component
    ``argmax pi_i`` (no gradient flows through the assignment). As the authors' code does, K zero
    vectors labelled 0..K-1 join the batch, so every component has a member and a mean (an empty
    component's mean is the origin). Returns ``(pull, push)``:

    - pull = sum over the K components of the mean L2 distance of its members (its zero vector
      included) to its mean, divided by K;
    - push = minus the sum of L2 distances between the means of all ordered pairs c != c',
      divided by K^2 - K (0 when K = 1).

    All components at once, with masked sums rather than boolean indexing: no host-device sync.
    """
    k = pi.shape[1]
    # One-hot by comparison: F.one_hot may check its input's range on the host.
    members = (pi.argmax(dim=1, keepdim=True) == torch.arange(k, device=pi.device)).to(z.dtype)  # (N, K)
    counts = members.sum(dim=0) + 1  # (K,): the zero vector counts as a member
    means = (members.T @ z) / counts.unsqueeze(1)  # (K, D): zero vectors add nothing to the sums
    distance_to_own_mean = torch.linalg.vector_norm(z - members @ means, dim=1)  # (N,)
    # Each zero vector lies |mean_c| from its component's mean.
    summed_distances = members.T @ distance_to_own_mean + torch.linalg.vector_norm(means, dim=1)
    pull = (summed_distances / counts).sum() / k
    # Explicit differences rather than torch.cdist, whose gradient is NaN at zero distance; the
    # diagonal (a mean to itself) is 0 and adds nothing, as the authors' sum over all pairs.
    pair_distances = torch.linalg.vector_norm(means.unsqueeze(0) - means.unsqueeze(1), dim=2)  # (K, K)
    push = -pair_distances.sum() / max(k * k - k, 1)
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
    temperature: float,
    w_entropy: float,
    w_instance: float,
    instance_form: str,
    w_pull: float,
    w_push: float,
) -> dict[str, torch.Tensor]:
    """The whole objective for two views a, b; each extra term is summed over both views, as in the
    authors' code.

    ``pi_*``: (N, K) mixing probabilities, or None for the plain SimCLR head (extra terms are 0).
    ``z_*``: (N, D) embeddings fed to NT-Xent. Returns ``total`` and every term, unweighted,
    so logging needs no second computation (``mixem.scores.LOSS_TERMS`` names them). A weight of 0
    switches its term off.
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
