"""mixem.data: tiny files written in the real on-disk formats, read back with the right shapes and labels."""

import gzip
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from mixem.config import DATASETS
from mixem.data import DEBIAN_FASHION_MNIST, load_dataset
from mixem.errors import DataNotFoundError, MixemError

RNG = np.random.default_rng(0)


def write_cifar_batch(path: Path, n: int, **labels: list[int]) -> np.ndarray:
    """A python-format CIFAR pickle (bytes keys, as the official files); returns its (n, 3072) data."""
    data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, **{k.encode(): v for k, v in labels.items()}}, f)
    return data


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file (magic 0x0000 08 ndim, big-endian int32 dims, bytes), gzipped when path ends in .gz."""
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    raw = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def write_fashion_mnist(root: Path, n_train: int = 5, n_test: int = 3, suffix: str = ".gz") -> None:
    raw = root / "FashionMNIST" / "raw"
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{stem}-images-idx3-ubyte{suffix}", RNG.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{stem}-labels-idx1-ubyte{suffix}", np.arange(n) % 10)


def write_stl10(root: Path, n_train: int = 2, n_test: int = 3, n_unlabeled: int = 0) -> None:
    """STL-10 binaries: per image and channel, pixels in column-major order; labels 1..10."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        if n == 0:
            continue
        images = np.zeros((n, 3, 96, 96), np.uint8)  # (N, C, H, W) as the loader should return it
        images[:, 1, 5, 70] = 200  # an asymmetric pixel: row 5, column 70 of the green channel
        images[:, 0] = np.arange(n, dtype=np.uint8)[:, None, None]  # red = image index
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # stored column-major
        if split != "unlabeled":
            (np.arange(n, dtype=np.uint8) % 10 + 1).tofile(folder / f"{split}_y.bin")


def test_registry_names():
    assert list(DATASETS) == ["digits", "fashion-mnist", "cifar10", "cifar100-20", "stl10"]
    assert DATASETS["cifar100-20"].num_classes == 20
    assert (DATASETS["stl10"].channels, DATASETS["stl10"].image_size) == (3, 96)


def test_digits_shapes_and_no_duplication():
    data = load_dataset("digits")
    images, labels = data.select("train+test")
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.uint8
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert int(images.max()) == 255 and int(images.min()) == 0  # 0..16 rescaled to 0..255
    assert set(labels.tolist()) == set(range(10)) and data.num_classes == 10
    assert data.select("test")[0] is data.select("train")[0]  # evaluation split = the training pool


def test_cifar10_reads_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    first = write_cifar_batch(folder / "data_batch_1", 4, labels=[0, 1, 2, 3])
    for i in range(2, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 4, labels=[9, 8, 7, 6])
    write_cifar_batch(folder / "test_batch", 3, labels=[5, 5, 5])
    data = load_dataset("cifar10", tmp_path)
    images, labels = data.splits["train"]
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels[:4].tolist() == [0, 1, 2, 3]
    # CIFAR rows hold 1024 red, then 1024 green, then 1024 blue values, each row-major.
    assert torch.equal(images[0, 1, 2, 5], torch.tensor(first[0, 1024 + 2 * 32 + 5]))
    assert data.select("train+test")[0].shape == (23, 3, 32, 32)


def test_cifar100_uses_the_20_coarse_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    fine = [0, 57, 99, 42, 13]
    coarse = [4, 19, 0, 11, 7]
    for split in ("train", "test"):
        write_cifar_batch(folder / split, 5, fine_labels=fine, coarse_labels=coarse)
    data = load_dataset("cifar100-20", tmp_path)
    assert data.num_classes == 20
    for split in ("train", "test"):
        images, labels = data.splits[split]
        assert images.shape == (5, 3, 32, 32) and labels.tolist() == coarse


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_fashion_mnist_reads_idx_in_torchvision_layout(tmp_path, suffix):
    write_fashion_mnist(tmp_path, suffix=suffix)
    data = load_dataset("fashion-mnist", tmp_path)
    images, labels = data.splits["train"]
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 1, 2, 3, 4] and labels.dtype == torch.int64
    assert data.splits["test"][0].shape == (3, 1, 28, 28)


def test_corrupt_idx_raises(tmp_path):
    write_fashion_mnist(tmp_path)
    path = tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(20)))  # 1-d magic where 3-d is expected
    with pytest.raises(MixemError, match="not an idx file"):
        load_dataset("fashion-mnist", tmp_path)
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + np.array([5, 28, 28], ">i4").tobytes() + bytes(100)))
    with pytest.raises(MixemError, match="truncated"):
        load_dataset("fashion-mnist", tmp_path)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian(tmp_path):
    data = load_dataset("fashion-mnist", tmp_path)  # nothing under tmp_path: falls back to Debian's files
    train, test = data.splits["train"], data.splits["test"]
    assert train[0].shape == (60000, 1, 28, 28) and test[0].shape == (10000, 1, 28, 28)
    assert train[1].bincount().tolist() == [6000] * 10 and test[1].bincount().tolist() == [1000] * 10


def test_stl10_column_major_and_labels(tmp_path):
    write_stl10(tmp_path, n_unlabeled=2)
    data = load_dataset("stl10", tmp_path)
    images, labels = data.splits["train"]
    assert images.shape == (2, 3, 96, 96) and images.dtype == torch.uint8
    assert images[:, 1, 5, 70].tolist() == [200, 200] and images[:, 1, 70, 5].tolist() == [0, 0]
    assert images[:, 0, 0, 0].tolist() == [0, 1]
    assert labels.tolist() == [0, 1] and data.splits["test"][1].tolist() == [0, 1, 2]  # 1..10 -> 0..9
    assert "unlabeled" not in data.splits
    with pytest.raises(MixemError, match="include_unlabeled"):
        data.select("train+unlabeled")


def test_stl10_unlabeled(tmp_path):
    write_stl10(tmp_path, n_unlabeled=4)
    data = load_dataset("stl10", tmp_path, include_unlabeled=True)
    images, labels = data.select("train+test+unlabeled")
    assert images.shape == (9, 3, 96, 96)
    assert labels[-4:].tolist() == [-1] * 4 and (labels[:5] >= 0).all()
    assert images[-1, 1, 5, 70] == 200


def test_missing_files_name_the_expected_path(tmp_path):
    for name, folder in [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100-20", "cifar-100-python"),
        ("stl10", "stl10_binary"),
    ]:
        with pytest.raises(DataNotFoundError, match="--download") as info:
            load_dataset(name, tmp_path)
        assert str(tmp_path / folder) in str(info.value)
    write_stl10(tmp_path)  # labelled files only: asking for the unlabelled ones still fails
    with pytest.raises(DataNotFoundError, match="unlabeled_X.bin"):
        load_dataset("stl10", tmp_path, include_unlabeled=True)


def test_data_dir_defaults_to_env(tmp_path, monkeypatch):
    write_stl10(tmp_path)
    monkeypatch.setenv("MIXEM_DATA_DIR", str(tmp_path))
    assert load_dataset("stl10").splits["train"][0].shape == (2, 3, 96, 96)


def test_download_uses_torchvision_layout(tmp_path, monkeypatch):
    calls = []

    def fake_stl10(root, download):
        calls.append((root, download))
        write_stl10(Path(root))

    monkeypatch.setattr(torchvision.datasets, "STL10", fake_stl10)
    assert load_dataset("stl10", tmp_path, download=True).splits["test"][0].shape == (3, 3, 96, 96)
    assert calls == [(str(tmp_path), True)]


def test_failed_download_raises_data_not_found(tmp_path, monkeypatch):
    def offline(root, download):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataNotFoundError, match="no route to host") as info:
        load_dataset("cifar10", tmp_path, download=True)
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)


def test_unknown_dataset_and_split():
    with pytest.raises(MixemError, match="cifar100-20"):
        load_dataset("imagenet")
    data = load_dataset("digits")
    with pytest.raises(MixemError, match="available: train, test"):
        data.select("train+val")
