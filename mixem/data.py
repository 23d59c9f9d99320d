"""Image datasets by name, loaded whole into memory as uint8 tensors.

The trainer augments whole batches on the GPU, so there is no per-image Dataset or PIL here:
`load_dataset(name)` returns every split as `(images uint8 (N, C, H, W), labels int64 (N,))`.

    data = load_dataset("cifar10", "data", download=True)
    images, labels = data.select("train+test")   # (60000, 3, 32, 32), (60000,)

Where the files are looked for, under `data_dir` (default: $MIXEM_DATA_DIR, else ./data), in the
layout torchvision's downloaders produce (a URI such as s3://BUCKET/PREFIX holding the same layout
is copied to the node's disk first: `mixem.staging`):

| name          | files                                                                       |
|---------------|-----------------------------------------------------------------------------|
| digits        | none: ships inside scikit-learn                                             |
| fashion-mnist | FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], else    |
|               | /usr/share/datasets/fashion-mnist/ (Debian package dataset-fashion-mnist)   |
| cifar10       | cifar-10-batches-py/{data_batch_1..5,test_batch} (python pickles)           |
| cifar100-20   | cifar-100-python/{train,test}; labels are the 20 `coarse_labels`            |
| stl10         | stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin (include_unlabeled)    |

`digits` has no official split: `train` and `test` are both the whole set (1,797 images), and
`select("train+test")` returns it once. Evaluating on `test` then means evaluating on the training
pool, as the authors do in their train+test setting (no labels are used for training).

Every file is checked as it is read, so that nothing is trained or scored on garbage: pixels must be
bytes (a cast of CIFAR's float pixels in [0, 1] would give black images), images must have the
dataset's shape and labels must be classes 0..num_classes-1; a file that breaks a rule, cannot be read
or is a folder is refused in one sentence naming it and the fix. `select_labelled` is `select` for an
evaluation split: it refuses splits without labels (stl10's `unlabeled`).
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from mixem.config import DATASETS, DatasetInfo
from mixem.errors import DataNotFoundError, MixemError
from mixem.staging import is_uri, stage_dataset

Split = tuple[torch.Tensor, torch.Tensor]  # images uint8 (N, C, H, W), labels int64 (N,); -1 = unlabelled


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# The torchvision class that downloads each dataset into data_dir / DATASETS[name].folder.
_DOWNLOADERS = {"fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100-20": "CIFAR100", "stl10": "STL10"}


@dataclass
class ImageData:
    name: str
    num_classes: int
    splits: dict[str, Split]

    def select(self, spec: str) -> Split:
        """Images (N, C, H, W) and labels (N,) of the "+"-joined splits in `spec`, concatenated.

        Splits that share the same tensors (digits' train and test) are included once.
        """
        parts: list[Split] = []
        for split in spec.split("+"):
            if split not in self.splits:
                hint = " (stl10 loads it with include_unlabeled=True)" if split == "unlabeled" else ""
                raise MixemError(
                    f"Unknown split {split!r} in {spec!r} for {self.name}; available: {', '.join(self.splits)}{hint}."
                )
            if not any(self.splits[split][0] is images for images, _ in parts):
                parts.append(self.splits[split])
        if len(parts) == 1:
            return parts[0]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def select_labelled(self, spec: str) -> Split:
        """`select(spec)` for an evaluation split (--eval-split): refused in one sentence when `spec` names a
        split this dataset lacks or one without labels (stl10's `unlabeled`, loaded or not)."""
        DATASETS[self.name].check_split(spec, "--eval-split", labelled=True)
        return self.select(spec)


def default_data_dir() -> Path:
    return Path(os.environ.get("MIXEM_DATA_DIR", "data"))


def load_dataset(
    name: str, data_dir: str | Path | None = None, *, download: bool = False, include_unlabeled: bool = False
) -> ImageData:
    """Load every split of dataset `name` into memory (see the module docstring for where files go).

    download: fetch missing files into data_dir with torchvision. include_unlabeled: also load stl10's
    100k `unlabeled` images (labels -1); ignored by the other datasets, which have none.
    Raises MixemError for an unknown name or corrupt files, DataNotFoundError for missing files.
    """
    if name not in DATASETS:
        raise MixemError(f"Unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}.")
    if is_uri(data_dir):
        if download:
            raise MixemError(f"--download fetches {name} from its original hosts into a local folder, not into "
                             f"{data_dir}; upload it there once (docs/cluster.md) and leave --download out.")
        data_dir = stage_dataset(str(data_dir), name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if name == "digits":
        splits = _load_digits()
    elif name == "fashion-mnist":
        splits = _load_fashion_mnist(root, download)
    elif name == "cifar10":
        splits = _load_cifar10(root, download)
    elif name == "cifar100-20":
        splits = _load_cifar100_20(root, download)
    else:
        splits = _load_stl10(root, download, include_unlabeled)
    for split, (images, labels) in splits.items():
        _check_loaded(DATASETS[name], split, images, labels)
    return ImageData(name, DATASETS[name].num_classes, splits)


def _check_loaded(info: DatasetInfo, split: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """The loaders' promise, whatever the files said: uint8 images (N, C, H, W) of the dataset's shape,
    N int64 labels, classes 0..num_classes-1 (-1 in the unlabelled splits)."""
    expected = (info.channels, info.image_size, info.image_size)
    if (images.dtype != torch.uint8 or images.shape[1:] != expected or labels.dtype != torch.int64
            or labels.shape != (len(images),)):
        raise MixemError(
            f"{info.name} {split} has {images.dtype} images {tuple(images.shape)} and {labels.dtype} labels "
            f"{tuple(labels.shape)}, expected torch.uint8 (N, {', '.join(map(str, expected))}) and torch.int64 "
            f"(N,); delete its files and download them again."
        )
    first, last = (-1, -1) if split in info.unlabelled else (0, info.num_classes - 1)
    if len(labels) and not first <= int(labels.min()) <= int(labels.max()) <= last:
        raise MixemError(
            f"{info.name} {split} has labels {int(labels.min())}..{int(labels.max())}, not all within "
            f"{first}..{last}; delete its files and download them again."
        )


def _locate(
    name: str, root: Path, files: list[str], download: bool, extra: tuple[Path, ...] = (), gzipped: bool = False
) -> Path:
    """The first folder (root's torchvision sub-folder, then `extra`) holding all `files` (or, when `gzipped`,
    their twins FILE.gz). Downloads into `root` with torchvision if none does and `download` is set."""
    folder = root / DATASETS[name].folder
    for candidate in (folder, *extra):
        if all(_find(candidate / f, gzipped) for f in files):
            return candidate
    if download:
        import torchvision.datasets  # slow import, needed only here

        try:
            getattr(torchvision.datasets, _DOWNLOADERS[name])(str(root), download=True)
        except (OSError, RuntimeError) as exc:  # no network (URLError is an OSError), bad checksum
            raise DataNotFoundError(
                f"Downloading {name} into {root.resolve()} failed ({exc}); download it where there is "
                f"internet access and copy it to {folder.resolve()}, or pass --data-dir to a copy."
            ) from exc
        if all(_find(folder / f, gzipped) for f in files):
            return folder
    also = "".join(f" (or {p})" for p in extra)
    raise DataNotFoundError(
        f"{name} not found: put {', '.join(files)} in {folder.resolve()}{also}, "
        f"or pass --download to fetch them into --data-dir DIR (now {root.resolve()})."
    )


def _find(path: Path, gzipped: bool) -> Path | None:
    """`path`, else (when `gzipped`) its gzipped twin `path.gz`, else None; a folder in their place is refused."""
    for candidate in (path, path.with_name(path.name + ".gz")) if gzipped else (path,):
        try:
            is_file, is_folder = candidate.is_file(), candidate.is_dir()
        except OSError as exc:  # its folder cannot be looked into
            raise _unreadable(candidate, exc) from exc
        if is_folder:
            raise _unreadable(candidate, IsADirectoryError(candidate))
        if is_file:
            return candidate
    return None


def _unreadable(path: Path, exc: OSError | EOFError | zlib.error) -> MixemError:
    """The sentence for a file that `_find` found (or a folder in its place) but that cannot be read."""
    if isinstance(exc, IsADirectoryError):
        return MixemError(f"A folder stands where the file {path} belongs; move it away and put the file there.")
    if isinstance(exc, PermissionError):
        return MixemError(f"{path} cannot be read (permission denied); check its permissions and its folder's.")
    return MixemError(f"Cannot read {path} ({exc}); delete it and download it again.")


@contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """`path` open for reading, decompressed when it ends in .gz; any failure to read it becomes one sentence."""
    try:
        gzipped = path.suffix == ".gz"
        with open(path, "rb") as file, (gzip.GzipFile(fileobj=file) if gzipped else nullcontext(file)) as f:
            yield f
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; EOFError: truncated gzip
        raise _unreadable(path, exc) from exc


def _load_digits() -> dict[str, Split]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]  # values 0..16 -> 0..255
    whole = (torch.from_numpy(images), torch.from_numpy(digits.target.astype(np.int64)))
    return {"train": whole, "test": whole}  # the very same tensors: select("train+test") keeps one copy


def _load_fashion_mnist(root: Path, download: bool) -> dict[str, Split]:
    stems = {"train": "train", "test": "t10k"}
    files = [f"{stem}-{kind}-ubyte" for stem in stems.values() for kind in ("images-idx3", "labels-idx1")]
    # torchvision keeps the idx files both gzipped and not, Debian only gzipped.
    folder = _locate("fashion-mnist", root, files, download, extra=(DEBIAN_FASHION_MNIST,), gzipped=True)
    info = DATASETS["fashion-mnist"]
    splits = {}
    for split, stem in stems.items():
        images_path = _find(folder / f"{stem}-images-idx3-ubyte", gzipped=True)
        labels_path = _find(folder / f"{stem}-labels-idx1-ubyte", gzipped=True)
        images = _read_idx(images_path, ndim=3)[:, None]  # (N, 1, 28, 28)
        _check_image_shape(images, images_path, info)
        labels = _checked_labels(_read_idx(labels_path, ndim=1), labels_path, 0, info.num_classes - 1)
        _check_counts(images, images_path, labels, labels_path)
        splits[split] = (torch.from_numpy(images), torch.from_numpy(labels))
    return splits


def _load_cifar10(root: Path, download: bool) -> dict[str, Split]:
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    folder = _locate("cifar10", root, train_files + ["test_batch"], download)
    num_classes = DATASETS["cifar10"].num_classes
    return {
        "train": _read_cifar([folder / f for f in train_files], b"labels", num_classes),
        "test": _read_cifar([folder / "test_batch"], b"labels", num_classes),
    }


def _load_cifar100_20(root: Path, download: bool) -> dict[str, Split]:
    folder = _locate("cifar100-20", root, ["train", "test"], download)
    num_classes = DATASETS["cifar100-20"].num_classes
    return {split: _read_cifar([folder / split], b"coarse_labels", num_classes) for split in ("train", "test")}


def _load_stl10(root: Path, download: bool, include_unlabeled: bool) -> dict[str, Split]:
    files = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    if include_unlabeled:
        files.append("unlabeled_X.bin")
    folder = _locate("stl10", root, files, download)
    splits = {}
    for split in ("train", "test"):
        images_path, labels_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
        images, labels = _read_stl10_images(images_path), _read_stl10_labels(labels_path)
        _check_counts(images, images_path, labels, labels_path)
        splits[split] = images, labels
    if include_unlabeled:
        images = _read_stl10_images(folder / "unlabeled_X.bin")
        splits["unlabeled"] = images, torch.full((len(images),), -1, dtype=torch.int64)
    return splits


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file (LeCun's MNIST format, optionally gzipped) of unsigned bytes with `ndim` dimensions."""
    with _opened(path) as f:
        raw = f.read()
    # Header: magic number = two zero bytes, type 0x08 (unsigned byte), number of dimensions; then each
    # dimension as a big-endian int32.
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes([0, 0, 8, ndim]):
        raise MixemError(f"{path} is not an idx file of {ndim}-d bytes; delete it and download it again.")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, offset=4))
    if len(raw) != header + int(np.prod(shape)):
        raise MixemError(f"{path} is truncated (header says {shape}); delete it and download it again.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


def _read_cifar(paths: list[Path], label_key: bytes, num_classes: int) -> Split:
    """The python-format CIFAR pickles in `paths`: images (N, 3, 32, 32), labels 0..num_classes-1 from `label_key`."""
    images, labels = zip(*(_read_cifar_batch(path, label_key, num_classes) for path in paths), strict=True)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle: its b"data" rows (N, 3072) of bytes as images (N, 3, 32, 32), its `label_key` labels."""
    with _opened(path) as f:
        try:
            batch = pickle.load(f, encoding="bytes")
            data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key])
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as exc:
            raise MixemError(
                f"{path} is not a python-format CIFAR batch ({exc!r}); delete it and download it again."
            ) from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise MixemError(
            f"{path} holds pixels of shape {data.shape} where CIFAR stores rows (N, 3072); "
            "delete it and download it again."
        )
    images = _checked_pixels(data, path).reshape(-1, 3, 32, 32)
    labels = _checked_labels(labels, path, 0, num_classes - 1)
    _check_counts(images, path, labels, path)
    return images, labels


def _checked_pixels(pixels: np.ndarray, path: Path) -> np.ndarray:
    """`pixels` as uint8, refused unless they are integers 0..255 (a cast would turn floats in [0, 1] black)."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype.kind not in "iu":
        raise MixemError(
            f"{path} holds {pixels.dtype} pixels where the dataset stores bytes (uint8 0..255); write them as uint8 "
            "or delete the file and download it again."
        )
    if pixels.size and not 0 <= pixels.min() <= pixels.max() <= 255:
        raise MixemError(
            f"{path} holds pixel values {pixels.min()}..{pixels.max()}, outside the bytes 0..255; "
            "delete it and download it again."
        )
    return pixels.astype(np.uint8)


def _checked_labels(labels: np.ndarray, path: Path, first: int, last: int) -> np.ndarray:
    """`labels` as int64 (N,), refused unless they are whole numbers in first..last (the classes as stored)."""
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise MixemError(
            f"{path} holds {labels.dtype} labels of shape {labels.shape}, not a list of whole numbers; "
            "delete it and download it again."
        )
    if labels.size and not first <= labels.min() <= labels.max() <= last:
        raise MixemError(
            f"{path} holds labels {labels.min()}..{labels.max()}, not all within the classes {first}..{last}; "
            "delete it and download it again."
        )
    return labels.astype(np.int64)


def _check_image_shape(images: np.ndarray, path: Path, info: DatasetInfo) -> None:
    """Refuse `path`'s images (N, C, H, W) unless they have the dataset's channels and size."""
    expected = (info.channels, info.image_size, info.image_size)
    if images.shape[1:] != expected:
        raise MixemError(
            f"{path} holds images of shape {images.shape[1:]}, not {info.name}'s {expected}; "
            "delete it and download it again."
        )


def _check_counts(images, images_path: Path, labels, labels_path: Path) -> None:
    """Refuse images and labels (arrays or tensors) that do not pair up one to one."""
    if len(images) == len(labels):
        return
    if images_path == labels_path:
        raise MixemError(
            f"{images_path} holds {len(images)} images but {len(labels)} labels; delete it and download it again."
        )
    raise MixemError(
        f"{labels_path} holds {len(labels)} labels for the {len(images)} images of {images_path}; "
        "delete both and download them again."
    )


def _read_stl10_images(path: Path) -> torch.Tensor:
    """STL-10 binary images, stored column-major per channel, as (N, 3, 96, 96) rows-first."""
    with _opened(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0 or size % (3 * 96 * 96):
            raise MixemError(f"{path} is truncated or corrupt; delete it and download it again.")
        stored = np.memmap(f, np.uint8, mode="r").reshape(-1, 3, 96, 96)  # (N, C, W, H)
        return torch.from_numpy(np.ascontiguousarray(stored.transpose(0, 1, 3, 2)))  # one copy, into RAM


def _read_stl10_labels(path: Path) -> torch.Tensor:
    with _opened(path) as f:
        stored = np.frombuffer(f.read(), np.uint8)
    return torch.from_numpy(_checked_labels(stored, path, 1, 10) - 1)  # 1..10 on disk


def main(argv: list[str] | None = None) -> int:
    """``python -m mixem.data DATASET [--data-dir DIR] [--download]``: fetch a dataset (once, into DIR, before
    uploading it to a cluster's bucket) and check that it loads, printing each split's size."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m mixem.data", allow_abbrev=False,
                                     description="Load a dataset (downloading it first with --download) and print "
                                     "its splits: the check before training on it or uploading it to a bucket.")
    parser.add_argument("dataset", choices=list(DATASETS))
    parser.add_argument("--data-dir", help="dataset root, or a URI such as s3://BUCKET/PREFIX (default: "
                        "$MIXEM_DATA_DIR, else ./data)")
    parser.add_argument("--download", action="store_true", help="fetch missing files from the original hosts")
    parser.add_argument("--stl10-unlabeled", action="store_true", help="stl10: also the 100k unlabelled images")
    args = parser.parse_args(argv)
    try:
        data = load_dataset(args.dataset, args.data_dir, download=args.download,
                            include_unlabeled=args.stl10_unlabeled)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for split, (images, _labels) in data.splits.items():
        print(f"{args.dataset} {split}: {len(images)} images {tuple(images.shape[1:])}, {data.num_classes} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
