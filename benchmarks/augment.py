"""Images per second of SimCLR augmentation: our batched ``augment`` next to torchvision's per-image pipelines.

    python benchmarks/augment.py --quick                     # under 30 s on a 2-core CPU
    python benchmarks/augment.py --device cpu
    python benchmarks/augment.py --device cuda --batch 1024

Three ways to make one view of random uint8 images, 32x32 (CIFAR) and 96x96 (STL10), measured side by
side in one process (the machine may be shared: compare within one run only):
(a) ``mixem.augment.augment`` on whole batches on ``--device``, as the training loop calls it;
(b) torchvision's PIL pipeline applied image by image to PIL images, as a DataLoader worker does
    (n workers run about n times as many, on n cores);
(c) the same pipeline in torchvision.transforms.v2 on uint8 tensors, image by image.
All three take AugmentConfig's defaults and end in the same normalised float tensor, so (b) and (c) add a
Normalize after ToTensor / ToDtype. Figures are medians over repeats.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # `python benchmarks/augment.py`: make the project importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import v2

from benchmarks.common import add_arguments, check_device, figure, print_table, take_turns, waiter
from mixem.augment import augment, blur_kernel_size
from mixem.config import AugmentConfig, OptimConfig

DEFAULT_BATCH = OptimConfig().batch_size  # what training uses
SIDES = (32, 96)
# (images per repeat of the per-image pipelines, repeats of each measurement)
QUICK, FULL = (128, 3), (1024, 7)


def simclr_pipeline(t, cfg: AugmentConfig, side: int, to_float: list):
    """The SimCLR augmentations in torchvision's module ``t`` (``transforms`` or ``transforms.v2``)."""
    return t.Compose(
        [
            t.RandomResizedCrop(side, scale=(cfg.crop_scale_min, cfg.crop_scale_max)),
            t.RandomHorizontalFlip(cfg.flip_p),
            t.RandomApply([t.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)], p=cfg.jitter_p),
            t.RandomGrayscale(cfg.grayscale_p),
            t.RandomApply(
                [t.GaussianBlur(blur_kernel_size(side), (cfg.blur_sigma_min, cfg.blur_sigma_max))], p=cfg.blur_p
            ),
            *to_float,
            t.Normalize([0.5] * 3, [0.25] * 3),  # as mixem.augment.normalize
        ]
    )


def rates(side: int, device: str, batch: int, per_image: int, repeats: int) -> list[float]:
    """Images per second of (a) ``augment``, (b) torchvision PIL and (c) torchvision v2 on random ``side`` images."""
    cfg = AugmentConfig()
    torch.manual_seed(0)
    batch_images = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8)
    on_device = batch_images.to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    tensors = list(batch_images[:per_image])
    pil_images = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in tensors]
    pil = simclr_pipeline(transforms, cfg, side, [transforms.ToTensor()])
    tensor_v2 = simclr_pipeline(v2, cfg, side, [v2.ToDtype(torch.float32, scale=True)])
    runs = [
        lambda: augment(on_device, cfg, generator),
        lambda: [pil(image) for image in pil_images],
        lambda: [tensor_v2(image) for image in tensors],
    ]
    seconds = take_turns(runs, repeats, waiter(device))
    return [images / time for images, time in zip((batch, per_image, per_image), seconds, strict=True)]


def measure(quick: bool, device: str, batch: int = DEFAULT_BATCH) -> list[dict]:
    """``rates`` for each side, and the ratios ours / PIL and ours / v2, as rows of a table."""
    per_image, repeats = QUICK if quick else FULL
    command = f"python benchmarks/augment.py --device {device} --batch {batch}" + (" --quick" if quick else "")
    rows = []
    for side in SIDES:
        ours, by_pil, by_v2 = rates(side, device, batch, per_image, repeats)
        size = f"{side}x{side}"
        rows += [
            figure(f"augmentation: augment() batched, {size}, {device}, batch {batch}", ours, "images/s", command),
            figure(f"augmentation: torchvision PIL per image, {size}", by_pil, "images/s", command),
            figure(f"augmentation: torchvision v2 uint8 per image, {size}", by_v2, "images/s", command),
            figure(f"augmentation: augment() / PIL, {size}", ours / by_pil, "x", command),
            figure(f"augmentation: augment() / v2, {size}", ours / by_v2, "x", command),
        ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"images per augment() call ({DEFAULT_BATCH})")
    args = parser.parse_args(argv)
    if args.batch <= 0:
        parser.error(f"--batch must be > 0, not {args.batch}.")
    check_device(parser, args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads; the per-image pipelines run in "
          "this one process")
    print_table(measure(args.quick, args.device, args.batch))


if __name__ == "__main__":
    main()
