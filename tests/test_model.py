import pytest
import torch

from mixem.config import ModelConfig
from mixem.model import MixemModel, MixtureHead


def test_mixture_head_matches_k_separate_mlps():
    torch.manual_seed(0)
    head = MixtureHead(in_features=6, num_components=3, hidden_dim=5, embed_dim=4)
    h = torch.randn(7, 6)
    logits, embeddings = head(h)
    assert logits.shape == (7, 3) and embeddings.shape == (7, 3, 4)
    for k in range(3):  # the batched computation equals component k's own MLP
        first_w = head.first.weight[k * 5 : (k + 1) * 5]
        first_b = head.first.bias[k * 5 : (k + 1) * 5]
        hidden = torch.relu(h @ first_w.T + first_b)
        expected = hidden @ head.second.weight[k] + head.second.bias[k]
        assert torch.allclose(embeddings[:, k], expected, atol=1e-6)


@pytest.mark.parametrize(
    "backbone, channels, size", [("small_cnn", 1, 8), ("small_cnn", 1, 28), ("resnet18", 3, 32), ("resnet18", 3, 96)]
)
@pytest.mark.parametrize("head", ["mixture", "simclr"])
def test_model_shapes(backbone, channels, size, head):
    cfg = ModelConfig(backbone=backbone, head=head, num_components=4, embed_dim=8, hidden_dim=16)
    out = MixemModel(cfg, channels, size)(torch.randn(2, channels, size, size))
    assert out["z"].shape == (2, 8)
    if head == "mixture":
        assert out["pi"].shape == (2, 4) and torch.allclose(out["pi"].sum(dim=1), torch.ones(2))
    else:
        assert "pi" not in out


def test_resnet_stems():
    cifar = MixemModel(ModelConfig(), 3, 32).backbone
    stl = MixemModel(ModelConfig(), 3, 96).backbone
    assert cifar.conv1.kernel_size == (3, 3) and isinstance(cifar.maxpool, torch.nn.Identity)
    assert stl.conv1.kernel_size == (7, 7) and isinstance(stl.maxpool, torch.nn.MaxPool2d)
