"""SimCLR augmentations (Chen et al. 2020) applied to whole batches of tensors.

Every image draws its own random parameters, but the work is a handful of batched tensor ops
(one ``grid_sample`` for crop + flip, one grouped convolution for blur), so the same code runs
on the GPU when there is one: no per-image PIL in the training loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mixem.config import AugmentConfig

# ITU-R 601 luma, as torchvision's rgb_to_grayscale.
_LUMA = torch.tensor([0.299, 0.587, 0.114])
# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W) in [0, 255] -> float in [0, 1]."""
    return images.float().div_(255.0)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> roughly zero-centred network input; used for training and evaluation alike."""
    return (images - 0.5) / 0.25


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _coin(n: int, p: float, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def random_resized_crop_flip(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Crop a random box (area share in [crop_scale_min, crop_scale_max], aspect 3/4..4/3), resize it
    back to the full side, and flip it horizontally with ``flip_p``: one affine resampling per image."""
    n, device = x.shape[0], x.device
    area = _uniform(n, cfg.crop_scale_min, cfg.crop_scale_max, generator, device)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), generator, device)
    # Half-extents in normalised coordinates ([-1, 1] spans the image).
    half_w = torch.sqrt(area * log_ratio.exp())
    half_h = torch.sqrt(area / log_ratio.exp())
    # A box that does not fit becomes the whole image, as torchvision's fallback for square images.
    too_big = (half_w > 1) | (half_h > 1)
    half_w, half_h = half_w.masked_fill(too_big, 1.0), half_h.masked_fill(too_big, 1.0)
    centre_x = (torch.rand(n, generator=generator, device=device) * 2 - 1) * (1 - half_w)
    centre_y = (torch.rand(n, generator=generator, device=device) * 2 - 1) * (1 - half_h)
    flip = torch.where(_coin(n, cfg.flip_p, generator, device), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = half_w * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = half_h
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> luma (N, 1, H, W)."""
    return torch.einsum("nchw,c->nhw", x, _LUMA.to(x.device)).unsqueeze(1)


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Shift the hue of RGB images (N, 3, H, W) by ``turns`` (N,) of the colour wheel, in YIQ space."""
    to_yiq = _RGB_TO_YIQ.to(x.device)
    angle = turns * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.zeros(x.shape[0], 3, 3, device=x.device)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    transform = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", transform, x)


def colour_jitter(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and hue jitter with probability ``jitter_p`` per image.

    The order is fixed (torchvision shuffles it per call); saturation and hue apply to colour images only.
    """
    n, device = x.shape[0], x.device
    on = _coin(n, cfg.jitter_p, generator, device).float()

    def factor(strength: float) -> torch.Tensor:  # 1 where the image is not jittered
        drawn = _uniform(n, max(0.0, 1 - strength), 1 + strength, generator, device)
        return (on * drawn + (1 - on)).view(n, 1, 1, 1)

    x = (x * factor(cfg.brightness)).clamp(0, 1)
    mean = (_grey(x) if x.shape[1] == 3 else x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * factor(cfg.contrast) + mean).clamp(0, 1)
    if x.shape[1] == 3:
        grey = _grey(x)
        x = ((x - grey) * factor(cfg.saturation) + grey).clamp(0, 1)
        if cfg.hue > 0:
            x = _rotate_hue(x, on * _uniform(n, -cfg.hue, cfg.hue, generator, device)).clamp(0, 1)
    return x


def random_grayscale(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Replace colour images (N, 3, H, W) by their luma with probability ``p``."""
    if x.shape[1] != 3 or p == 0:
        return x
    chosen = _coin(x.shape[0], p, generator, x.device).view(-1, 1, 1, 1)
    return torch.where(chosen, _grey(x).expand_as(x), x)


def random_blur(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur with probability ``blur_p``: kernel ~10% of the side (odd, >= 3), sigma drawn per image."""
    if cfg.blur_p == 0:
        return x
    n, c, h, w = x.shape
    device = x.device
    size = max(3, int(0.1 * h) // 2 * 2 + 1)
    sigma = _uniform(n, cfg.blur_sigma_min, cfg.blur_sigma_max, generator, device)
    offsets = torch.arange(size, device=device) - size // 2
    kernels = torch.exp(-(offsets.unsqueeze(0) ** 2) / (2 * sigma.unsqueeze(1) ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    identity = (offsets == 0).float().expand(n, size)
    kernels = torch.where(_coin(n, cfg.blur_p, generator, device).unsqueeze(1), kernels, identity)
    kernels = kernels.repeat_interleave(c, dim=0)  # one kernel per (image, channel)
    # Separable blur as two grouped convolutions over the batch folded into channels.
    y = F.pad(x.reshape(1, n * c, h, w), [size // 2] * 4, mode="reflect")
    y = F.conv2d(y, kernels.view(n * c, 1, 1, size), groups=n * c)
    y = F.conv2d(y, kernels.view(n * c, 1, size, 1), groups=n * c)
    return y.view(n, c, h, w)


def augment(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """One SimCLR view of a batch: uint8 (N, C, H, W) -> normalised float (N, C, H, W) on the same device."""
    x = to_float(images)
    x = random_resized_crop_flip(x, cfg, generator)
    x = colour_jitter(x, cfg, generator)
    x = random_grayscale(x, cfg.grayscale_p, generator)
    x = random_blur(x, cfg, generator)
    return normalize(x)
