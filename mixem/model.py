"""Backbones and projection heads: MIX'EM's mixture of embeddings and SimCLR's single MLP.

Shapes: ``N`` images, ``F`` backbone features, ``K`` components, ``D`` embedding dimensions.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixem.config import ModelConfig
from mixem.errors import MixemError
from mixem.losses import mix_embeddings
from mixem.memory import memory_problem


def resnet18(in_channels: int, image_size: int, width: int = 64) -> tuple[nn.Module, int]:
    """torchvision's ResNet-18, random init, classifier removed: (N, C, H, W) -> (N, 512).
    Its width is torchvision's (``width`` is for the small CNN only).

    Small images (<= 64 px, e.g. CIFAR's 32) get the CIFAR stem: a 3x3 stride-1 convolution and no
    max-pool, as the authors; larger ones (STL10's 96) keep the standard stem.
    """
    import torchvision  # a slow import, which the small CNN (CPU-scale runs, sweep workers) does without

    net = torchvision.models.resnet18(weights=None)
    if image_size <= 64:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net, 512


def small_cnn(in_channels: int, image_size: int, width: int = 32) -> tuple[nn.Module, int]:
    """A small VGG-style CNN for 8x8 and 28x28 grey images, sized for CPU runs: (N, C, H, W) -> (N, 4 * width).

    Three conv-BN-ReLU blocks of width, 2x and 4x channels; 28 px images are halved twice
    (28 -> 14 -> 7), 8 px digits once (8 -> 4).
    """

    def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return layers + ([nn.MaxPool2d(2)] if pool else [])

    net = nn.Sequential(
        *block(in_channels, width, image_size >= 16),
        *block(width, 2 * width, True),
        *block(2 * width, 4 * width, False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return net, 4 * width


BACKBONES = {"resnet18": resnet18, "small_cnn": small_cnn}


def check_memory(config, local_batch: int, device: torch.device) -> None:
    """MixemError, with the estimate, when the mixture head of ``config`` cannot fit in ``device``'s memory
    (a K so large that the kernel would kill the run without a word)."""
    available = (torch.cuda.get_device_properties(device).total_memory if device.type == "cuda"
                 else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    problem = memory_problem(config.model, local_batch, available, str(device))
    if problem:
        raise MixemError(problem)


class BatchedLinear(nn.Module):
    """K independent linear layers applied at once: (N, K, I) -> (N, K, O)."""

    def __init__(self, k: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default init, per component
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nki,kio->nko", x, self.weight) + self.bias


class MixtureHead(nn.Module):
    """MIX'EM's head: K component MLPs (F -> hidden -> ReLU -> D) and a gate MLP (F -> hidden -> ReLU -> K).

    All K components run as one batched operation; the first layers of all components share one
    matrix product. ``forward(h)``: h (N, F) -> ``(pi_logits (N, K), embeddings (N, K, D))``.
    """

    def __init__(self, in_features: int, num_components: int, hidden_dim: int, embed_dim: int):
        super().__init__()
        self.k, self.hidden_dim = num_components, hidden_dim
        self.first = nn.Linear(in_features, num_components * hidden_dim)
        self.second = BatchedLinear(num_components, hidden_dim, embed_dim)
        self.gate = nn.Sequential(
            nn.Linear(in_features, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, num_components)
        )

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.relu(self.first(h)).view(h.shape[0], self.k, self.hidden_dim)
        return self.gate(h), self.second(hidden)


class SimCLRHead(nn.Module):
    """SimCLR's projection MLP (F -> hidden -> ReLU -> D): ``forward(h)``: (N, F) -> (N, D)."""

    def __init__(self, in_features: int, hidden_dim: int, embed_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, embed_dim)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(h)


class MixemModel(nn.Module):
    """Backbone + head. ``forward(x)`` returns a dict of the representations, for images (N, C, H, W):

    - ``h`` (N, F): backbone features;
    - ``z`` (N, D): the embedding fed to NT-Xent (mixture: sum_k pi_k normalize(e_k));
    - mixture head only: ``pi`` (N, K) mixing probabilities and ``embeddings`` (N, K, D).
    """

    def __init__(self, cfg: ModelConfig, in_channels: int, image_size: int):
        super().__init__()
        self.backbone, features = BACKBONES[cfg.backbone](in_channels, image_size, cfg.cnn_width)
        if cfg.head == "mixture":
            self.head = MixtureHead(features, cfg.num_components, cfg.hidden_dim, cfg.embed_dim)
        else:
            self.head = SimCLRHead(features, cfg.hidden_dim, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.backbone(x)
        if isinstance(self.head, SimCLRHead):
            return {"h": h, "z": self.head(h)}
        pi_logits, embeddings = self.head(h)
        pi = pi_logits.float().softmax(dim=1)
        return {"h": h, "z": mix_embeddings(pi, embeddings.float()), "pi": pi, "embeddings": embeddings}


class TwoViews(nn.Module):
    """``model`` run once per view, as the authors do, so BatchNorm normalises each view with its own
    statistics. One module, so that DistributedDataParallel sees one forward pass per step.

    ``forward(view_a, view_b)`` -> ``(model(view_a), model(view_b))``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> tuple[dict, dict]:
        return self.model(view_a), self.model(view_b)
