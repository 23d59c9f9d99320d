"""SimCLR augmentations (Chen et al. 2020) applied to whole batches of tensors.

Every image draws its own random parameters, but the work is a handful of batched tensor ops
(one ``grid_sample`` for crop + flip, one grouped convolution for blur), so the same code runs
on the GPU when there is one: no per-image PIL in the training loop.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from mixem.config import AugmentConfig

# ITU-R 601 luma, as torchvision's rgb_to_grayscale.
_LUMA = torch.tensor([0.299, 0.587, 0.114])
# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
# torchvision's RandomResizedCrop: aspect ratios log-uniform in [3/4, 4/3], 10 boxes tried before its fallback.
_MIN_RATIO, _MAX_RATIO = 3 / 4, 4 / 3
_CROP_ATTEMPTS = 10


@functools.cache
def _colour_constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(luma, RGB -> YIQ, YIQ -> RGB) on ``device``, copied once: a copy per call is a host-to-device
    transfer per batch on the GPU, which blocks the host."""
    return tuple(constant.to(device, dtype) for constant in (_LUMA, _RGB_TO_YIQ, _YIQ_TO_RGB))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W) in [0, 255] -> a new float tensor in [0, 1] (never the caller's)."""
    return images.to(torch.float32, copy=True).div_(255.0)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> roughly zero-centred network input; used for training and evaluation alike."""
    return (images - 0.5) / 0.25


def _uniform(size: int | tuple[int, ...], low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(size, generator=generator, device=device) * (high - low) + low


def _coin(n: int, p: float, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def crop_boxes(
    n: int, cfg: AugmentConfig, generator: torch.Generator, device, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n`` crop boxes with the distribution of torchvision's ``RandomResizedCrop.get_params``.

    Each image tries 10 boxes (area share uniform in [crop_scale_min, crop_scale_max], aspect ratio
    log-uniform in [3/4, 4/3]) and keeps the first that fits; where none fits it takes the centre crop
    with the aspect clamped to [3/4, 4/3] (the whole image when square). All tries are drawn at once
    and chosen without a host-device sync. Returns ``(centre_x, centre_y, half_w, half_h)``, each (n,),
    in normalised coordinates ([-1, 1] spans the image), continuous where torchvision rounds to pixels.
    """
    tries = (n, _CROP_ATTEMPTS)
    area = _uniform(tries, cfg.crop_scale_min, cfg.crop_scale_max, generator, device)
    ratio = _uniform(tries, math.log(_MIN_RATIO), math.log(_MAX_RATIO), generator, device).exp()
    # The ratio is width / height in pixels; normalised coordinates stretch a non-square image's box.
    squash = height / width
    half_w = torch.sqrt(area * ratio * squash)
    half_h = torch.sqrt(area / ratio / squash)
    fits = (half_w <= 1) & (half_h <= 1)
    first = fits.int().argmax(dim=1, keepdim=True)  # argmax returns the first maximum: the first box that fits
    found = fits.any(dim=1)
    fallback_w, fallback_h = min(1.0, _MAX_RATIO * squash), min(1.0, 1 / (_MIN_RATIO * squash))
    half_w = torch.where(found, half_w.gather(1, first).squeeze(1), fallback_w)
    half_h = torch.where(found, half_h.gather(1, first).squeeze(1), fallback_h)
    # The fallback is centred; on a square image it is the whole image, which leaves no room to move anyway.
    centre_x = torch.where(found, _uniform(n, -1.0, 1.0, generator, device) * (1 - half_w), 0.0)
    centre_y = torch.where(found, _uniform(n, -1.0, 1.0, generator, device) * (1 - half_h), 0.0)
    return centre_x, centre_y, half_w, half_h


def random_resized_crop_flip(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Crop a random box (``crop_boxes``), resize it back to the full side, and flip it horizontally with
    ``flip_p``: one affine resampling per image."""
    n, _, height, width = x.shape
    centre_x, centre_y, half_w, half_h = crop_boxes(n, cfg, generator, x.device, height, width)
    flip = torch.where(_coin(n, cfg.flip_p, generator, x.device), -1.0, 1.0)
    zero = torch.zeros_like(half_w)
    theta = torch.stack(
        [torch.stack([half_w * flip, zero, centre_x], dim=1), torch.stack([zero, half_h, centre_y], dim=1)], dim=1
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> luma (N, 1, H, W)."""
    luma, _, _ = _colour_constants(x.device, x.dtype)
    return torch.einsum("nchw,c->nhw", x, luma).unsqueeze(1)


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Shift the hue of RGB images (N, 3, H, W) by ``turns`` (N,) of the colour wheel, in YIQ space."""
    _, to_yiq, to_rgb = _colour_constants(x.device, x.dtype)
    angle = turns * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=1).view(-1, 3, 3)
    transform = to_rgb @ rotation @ to_yiq  # (N, 3, 3)
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


def blur_kernel_size(side: int) -> int:
    """SimCLR's Gaussian blur kernel: ~10% of the image side, odd, at least 3."""
    return max(3, int(0.1 * side) // 2 * 2 + 1)


def random_blur(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur with probability ``blur_p``: kernel ``blur_kernel_size(H)``, sigma drawn per image."""
    if cfg.blur_p == 0:
        return x
    n, c, h, w = x.shape
    device = x.device
    size = blur_kernel_size(h)
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
