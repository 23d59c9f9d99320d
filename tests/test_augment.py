import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision import transforms

from mixem.augment import augment, crop_boxes, random_blur, random_resized_crop_flip
from mixem.config import AugmentConfig

DRAWS = 20_000


def test_augment_keeps_shape_range_and_draws_per_image_parameters():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = augment(images, AugmentConfig(), torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.float32 and out.device == images.device
    assert out.min() >= -2.0 - 1e-5 and out.max() <= 2.0 + 1e-5  # normalize() maps [0, 1] to [-2, 2]
    same = augment(images[:1].repeat(8, 1, 1, 1), AugmentConfig(), torch.Generator().manual_seed(0))
    assert not torch.allclose(same[0], same[1])  # identical inputs, different random views


@pytest.mark.parametrize("channels", [1, 3])
def test_augment_is_reproducible_from_the_generator(channels):
    images = torch.randint(0, 256, (8, channels, 32, 32), dtype=torch.uint8)
    first = augment(images, AugmentConfig(), torch.Generator().manual_seed(3))
    again = augment(images, AugmentConfig(), torch.Generator().manual_seed(3))
    other = augment(images, AugmentConfig(), torch.Generator().manual_seed(4))
    assert first.shape == images.shape and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_full_crop_without_flip_is_identity():
    x = torch.rand(4, 1, 8, 8)
    cfg = AugmentConfig(crop_scale_min=1.0, crop_scale_max=1.0, flip_p=0.0)
    # Area share 1 fits only at aspect 1, so every try fails and the fallback is the whole (square) image.
    out = random_resized_crop_flip(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-5)


def test_flip_mirrors_the_image():
    x = torch.rand(3, 1, 8, 8)
    cfg = AugmentConfig(crop_scale_min=1.0, crop_scale_max=1.0, flip_p=1.0)
    out = random_resized_crop_flip(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def _sampled_coordinates(centre: torch.Tensor, half: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Where a box (centre, half-extent: (n,)) samples the input along one axis, for output pixels at ``pixels``."""
    return centre.unsqueeze(1) + half.unsqueeze(1) * pixels  # (n, side)


def test_crop_resamples_the_drawn_box():
    # Channels hold each pixel centre's normalised x and y: bilinear resampling keeps a linear ramp exact,
    # so the output shows which box was cropped.
    n, side = 64, 48
    pixels = (torch.arange(side) * 2 + 1) / side - 1
    ramps = torch.stack(torch.meshgrid(pixels, pixels, indexing="xy")).expand(n, 2, side, side)
    cfg = AugmentConfig(flip_p=0.0)
    out = random_resized_crop_flip(ramps, cfg, torch.Generator().manual_seed(5))
    centre_x, centre_y, half_w, half_h = crop_boxes(n, cfg, torch.Generator().manual_seed(5), "cpu", side, side)
    expected_x = _sampled_coordinates(centre_x, half_w, pixels).unsqueeze(1).expand(n, side, side)
    expected_y = _sampled_coordinates(centre_y, half_h, pixels).unsqueeze(2).expand(n, side, side)
    # Samples within half a pixel of the border meet the reflection padding, where the ramp bends.
    inside = (expected_x.abs() <= pixels[-1]) & (expected_y.abs() <= pixels[-1])
    assert inside.float().mean() > 0.9
    assert torch.allclose(out[:, 0][inside], expected_x[inside], atol=1e-4)
    assert torch.allclose(out[:, 1][inside], expected_y[inside], atol=1e-4)


def _torchvision_boxes(scale: tuple[float, float], side: int) -> tuple[np.ndarray, np.ndarray]:
    """Area share and aspect ratio (width / height) of ``DRAWS`` torchvision boxes on a square image."""
    image = torch.empty(1, side, side)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        boxes = torch.tensor(
            [transforms.RandomResizedCrop.get_params(image, scale, [3 / 4, 4 / 3]) for _ in range(DRAWS)]
        )
    h, w = boxes[:, 2].double(), boxes[:, 3].double()
    return (h * w / side**2).numpy(), (w / h).numpy()


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.5, 1.0)])
def test_crop_boxes_follow_torchvision(scale):
    # A large side keeps torchvision's pixel rounding out of the comparison.
    reference_area, reference_ratio = _torchvision_boxes(scale, side=1000)
    cfg = AugmentConfig(crop_scale_min=scale[0], crop_scale_max=scale[1])
    _, _, half_w, half_h = crop_boxes(DRAWS, cfg, torch.Generator().manual_seed(0), "cpu", 32, 32)
    area, ratio = (half_w * half_h).double().numpy(), (half_w / half_h).double().numpy()
    # The critical value at alpha = 0.001 is 0.0195 for 20,000 draws each; a box that falls back to the
    # whole image whenever its first try does not fit (14% of draws at (0.08, 1)) gives 0.14 on the area.
    assert ks_2samp(area, reference_area).statistic < 0.025
    assert ks_2samp(ratio, reference_ratio).statistic < 0.025
    whole_image = (half_w == 1) & (half_h == 1)
    assert whole_image.float().mean() < 0.01


@pytest.mark.parametrize("height, width", [(32, 32), (24, 48), (48, 24)])
def test_crop_boxes_lie_inside_the_image_with_bounded_aspect(height, width):
    cfg = AugmentConfig(crop_scale_min=0.08, crop_scale_max=1.0)
    centre_x, centre_y, half_w, half_h = crop_boxes(5000, cfg, torch.Generator().manual_seed(1), "cpu", height, width)
    assert ((centre_x.abs() + half_w) <= 1 + 1e-6).all() and ((centre_y.abs() + half_h) <= 1 + 1e-6).all()
    pixel_ratio = half_w * width / (half_h * height)
    assert (pixel_ratio >= 3 / 4 - 1e-5).all() and (pixel_ratio <= 4 / 3 + 1e-5).all()
    area = half_w * half_h
    assert area.min() >= 0.08 - 1e-6 and area.max() <= 1 + 1e-6


@pytest.mark.parametrize("height, width", [(32, 32), (30, 60), (60, 30)])
def test_crop_boxes_fall_back_to_the_centre_crop_of_torchvision(height, width):
    # No try fits at area share 1 (a square box on a square image has probability zero).
    cfg = AugmentConfig(crop_scale_min=1.0, crop_scale_max=1.0)
    centre_x, centre_y, half_w, half_h = crop_boxes(100, cfg, torch.Generator().manual_seed(2), "cpu", height, width)
    _, _, h, w = transforms.RandomResizedCrop.get_params(torch.empty(1, height, width), [1.0, 1.0], [3 / 4, 4 / 3])
    assert torch.allclose(half_w, torch.full_like(half_w, w / width), atol=1 / width)  # within torchvision's rounding
    assert torch.allclose(half_h, torch.full_like(half_h, h / height), atol=1 / height)
    assert not centre_x.any() and not centre_y.any()


class _SyncOps(TorchDispatchMode):
    """Records the aten ops that make the host wait for the device on a GPU (values read back, masked shapes)."""

    SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "linalg_inv_ex", "is_nonzero")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in self.SYNCING:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_augment_runs_no_op_that_syncs_host_and_device():
    # The CPU stand-in for the CUDA test below: the ops that would wait for a GPU never run.
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    with _SyncOps() as ops:
        augment(images, AugmentConfig(), torch.Generator().manual_seed(0))
    assert ops.seen == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_on_cuda_never_syncs():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(0)
    augment(images, AugmentConfig(), generator)  # the first call copies the colour constants to the GPU once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = augment(images, AugmentConfig(), generator)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device == images.device and out.shape == images.shape and out.dtype == torch.float32


def test_blur_preserves_mean_and_smooths():
    x = torch.zeros(2, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    cfg = AugmentConfig(blur_p=1.0, blur_sigma_min=1.0, blur_sigma_max=1.0)
    out = random_blur(x, cfg, torch.Generator().manual_seed(0))
    assert out.sum().item() == pytest.approx(2.0, rel=1e-5)
    assert out.max() < 0.5
