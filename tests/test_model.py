import pytest
import torch

from mixem.augment import augment, random_blur, random_resized_crop_flip
from mixem.config import AugmentConfig, ModelConfig
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


def test_augment_keeps_shape_range_and_draws_per_image_parameters():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = augment(images, AugmentConfig(), torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= -2.0 - 1e-5 and out.max() <= 2.0 + 1e-5  # normalize() maps [0, 1] to [-2, 2]
    same = augment(images[:1].repeat(8, 1, 1, 1), AugmentConfig(), torch.Generator().manual_seed(0))
    assert not torch.allclose(same[0], same[1])  # identical inputs, different random views


def test_full_crop_without_flip_is_identity():
    x = torch.rand(4, 1, 8, 8)
    cfg = AugmentConfig(crop_scale_min=1.0, crop_scale_max=1.0, flip_p=0.0)
    # Area share 1 with a non-square aspect is clamped to the full image in both directions.
    out = random_resized_crop_flip(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-5)


def test_flip_mirrors_the_image():
    x = torch.rand(3, 1, 8, 8)
    cfg = AugmentConfig(crop_scale_min=1.0, crop_scale_max=1.0, flip_p=1.0)
    out = random_resized_crop_flip(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def test_blur_preserves_mean_and_smooths():
    x = torch.zeros(2, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    cfg = AugmentConfig(blur_p=1.0, blur_sigma_min=1.0, blur_sigma_max=1.0)
    out = random_blur(x, cfg, torch.Generator().manual_seed(0))
    assert out.sum().item() == pytest.approx(2.0, rel=1e-5)
    assert out.max() < 0.5
