"""mixem.data: tiny files written in the real on-disk formats, read back with the right shapes and labels."""

import gzip
import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from refusals import refusal

import mixem.data
from mixem.config import DATASETS
from mixem.data import DEBIAN_FASHION_MNIST, load_dataset
from mixem.errors import DataNotFoundError, MixemError

RNG = np.random.default_rng(0)


def write_cifar_batch(path: Path, n: int, data: np.ndarray | None = None, **labels: list[int]) -> np.ndarray:
    """A python-format CIFAR pickle (bytes keys, as the official files) of `data`, else n random rows (n, 3072)
    of bytes; returns its data."""
    data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8) if data is None else data
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, **{k.encode(): v for k, v in labels.items()}}, f)
    return data


def write_cifar10(root: Path, n: int = 2, test_data=None, test_labels=None) -> Path:
    """The five training batches of n images and the test batch (whose data and labels may be given instead);
    returns the folder."""
    folder = root / "cifar-10-batches-py"
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", n, labels=list(range(n)))
    test_labels = list(range(n)) if test_labels is None else test_labels
    write_cifar_batch(folder / "test_batch", n, test_data, labels=test_labels)
    return folder


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


def assert_one_sentence(error: pytest.ExceptionInfo | str, path: Path) -> None:
    """The error (or message) is one sentence (no full stop before its end, no line break) that names `path`."""
    message = error if isinstance(error, str) else str(error.value)
    assert str(path) in message, message
    rest = message.replace(str(path), "PATH")
    assert rest.endswith(".") and ". " not in rest and "\n" not in rest, message


def test_registry_lists_the_splits_the_loaders_return(tmp_path):
    write_stl10(tmp_path, n_unlabeled=1)
    assert tuple(load_dataset("stl10", tmp_path, include_unlabeled=True).splits) == DATASETS["stl10"].splits
    assert DATASETS["stl10"].unlabelled == ("unlabeled",)
    write_cifar10(tmp_path)
    for name in ("digits", "cifar10"):
        assert tuple(load_dataset(name, tmp_path).splits) == DATASETS[name].splits == ("train", "test")


@pytest.mark.parametrize("pixels", [np.float32, np.float64])
def test_cifar_float_pixels_refused_not_cast_to_black(tmp_path, pixels):
    data = RNG.random((2, 3072)).astype(pixels)  # values in [0, 1): a uint8 cast makes them all 0
    folder = write_cifar10(tmp_path, test_data=data)
    with pytest.raises(MixemError, match=f"{np.dtype(pixels)} pixels .* write them as uint8") as error:
        load_dataset("cifar10", tmp_path)
    assert_one_sentence(error, folder / "test_batch")


def test_cifar_integer_pixels_must_be_bytes(tmp_path):
    data = RNG.integers(0, 256, (2, 3072))  # int64 but within 0..255: the same images as uint8
    folder = write_cifar10(tmp_path, test_data=data)
    images = load_dataset("cifar10", tmp_path).splits["test"][0]
    assert images.dtype == torch.uint8 and torch.equal(images, torch.from_numpy(data.reshape(2, 3, 32, 32)).byte())
    data[1, 7] = 300  # would wrap around to 44
    write_cifar10(tmp_path, test_data=data)
    with pytest.raises(MixemError, match=r"pixel values 0\.\.300, outside the bytes 0\.\.255") as error:
        load_dataset("cifar10", tmp_path)
    assert_one_sentence(error, folder / "test_batch")


def test_cifar_pixels_in_another_layout_refused(tmp_path):
    data = RNG.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)  # channels last: reshaping would scramble it
    folder = write_cifar10(tmp_path, test_data=data)
    with pytest.raises(MixemError, match=r"shape \(2, 32, 32, 3\) where CIFAR stores rows \(N, 3072\)") as error:
        load_dataset("cifar10", tmp_path)
    assert_one_sentence(error, folder / "test_batch")


@pytest.mark.parametrize(("labels", "match"), [
    ([3, 10], r"labels 3\.\.10, not all within the classes 0\.\.9"),
    ([-1, 2], r"labels -1\.\.2, not all within the classes 0\.\.9"),
    ([0.0, 2.5], "float64 labels of shape"),  # a cast would round 2.5 down to class 2
])
def test_cifar10_labels_must_be_classes(tmp_path, labels, match):
    folder = write_cifar10(tmp_path, test_labels=labels)
    with pytest.raises(MixemError, match=match) as error:
        load_dataset("cifar10", tmp_path)
    assert_one_sentence(error, folder / "test_batch")


def test_cifar100_20_refuses_labels_beyond_the_20_superclasses(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_cifar_batch(folder / "train", 3, fine_labels=[0, 1, 2], coarse_labels=[0, 19, 3])
    write_cifar_batch(folder / "test", 3, fine_labels=[0, 1, 2], coarse_labels=[0, 57, 3])  # a fine label
    with pytest.raises(MixemError, match=r"labels 0\.\.57, not all within the classes 0\.\.19") as error:
        load_dataset("cifar100-20", tmp_path)
    assert_one_sentence(error, folder / "test")


def test_fashion_mnist_refuses_labels_beyond_its_classes_and_other_image_sizes(tmp_path):
    write_fashion_mnist(tmp_path)
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.array([0, 10, 9]))
    with pytest.raises(MixemError, match=r"labels 0\.\.10, not all within the classes 0\.\.9") as error:
        load_dataset("fashion-mnist", tmp_path)
    assert_one_sentence(error, raw / "t10k-labels-idx1-ubyte.gz")
    write_fashion_mnist(tmp_path)
    write_idx(raw / "train-images-idx3-ubyte.gz", np.zeros((5, 32, 32)))
    with pytest.raises(MixemError, match=r"images of shape \(1, 32, 32\), not fashion-mnist's \(1, 28, 28\)") as error:
        load_dataset("fashion-mnist", tmp_path)
    assert_one_sentence(error, raw / "train-images-idx3-ubyte.gz")


def test_labels_and_images_must_pair_up_naming_the_files(tmp_path):
    write_fashion_mnist(tmp_path)
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.arange(4))  # 5 images
    with pytest.raises(MixemError, match="holds 4 labels for the 5 images of .*delete both") as error:
        load_dataset("fashion-mnist", tmp_path)
    assert_one_sentence(error, raw / "train-images-idx3-ubyte.gz")
    write_stl10(tmp_path)
    np.ones(5, np.uint8).tofile(tmp_path / "stl10_binary" / "test_y.bin")  # 3 images
    with pytest.raises(MixemError, match="holds 5 labels for the 3 images") as error:
        load_dataset("stl10", tmp_path)
    assert_one_sentence(error, tmp_path / "stl10_binary" / "test_y.bin")
    folder = write_cifar10(tmp_path, test_labels=[1, 2, 3])  # 2 images
    with pytest.raises(MixemError, match="holds 2 images but 3 labels") as error:
        load_dataset("cifar10", tmp_path)
    assert_one_sentence(error, folder / "test_batch")


def test_evaluation_split_must_have_labels(tmp_path):
    write_stl10(tmp_path, n_unlabeled=2)
    for include_unlabeled in (True, False):  # refused whether the unlabelled images were loaded or not
        data = load_dataset("stl10", tmp_path, include_unlabeled=include_unlabeled)
        with pytest.raises(MixemError) as error:
            data.select_labelled("unlabeled")
        assert str(error.value) == "--eval-split unlabeled has no labels; evaluate on train or test."
        with pytest.raises(MixemError) as error:
            data.select_labelled("test+unlabeled")
        assert str(error.value) == (
            "--eval-split test+unlabeled includes unlabeled, which has no labels; evaluate on train or test."
        )
    images, labels = data.select_labelled("test")
    assert images is data.select("test")[0] and labels.tolist() == [0, 1, 2]
    assert torch.equal(data.select_labelled("train+test")[1], data.select("train+test")[1])
    with pytest.raises(MixemError) as error:
        load_dataset("digits").select_labelled("train+val")
    assert str(error.value) == (
        "--eval-split train+val includes val, which is not a split of digits; choose from train, test (joined with +)."
    )


def test_split_names_checked_without_loading():
    for info in DATASETS.values():
        info.check_split("train+test", "--train-split", labelled=False)
        info.check_split("test", "--eval-split", labelled=True)
    DATASETS["stl10"].check_split("train+unlabeled", "--train-split", labelled=False)
    with pytest.raises(MixemError, match="^--eval-split unlabeled has no labels; evaluate on train or test.$"):
        DATASETS["stl10"].check_split("unlabeled", "--eval-split", labelled=True)
    with pytest.raises(MixemError, match="^--train-split val is not a split of cifar10; choose from train, test"):
        DATASETS["cifar10"].check_split("val", "--train-split", labelled=False)


@pytest.mark.parametrize(("name", "writer", "file"), [
    ("cifar10", write_cifar10, "cifar-10-batches-py/data_batch_3"),
    ("fashion-mnist", write_fashion_mnist, "FashionMNIST/raw/t10k-images-idx3-ubyte.gz"),
    ("stl10", write_stl10, "stl10_binary/test_X.bin"),
    ("stl10", write_stl10, "stl10_binary/train_y.bin"),
])
def test_folder_where_a_file_belongs(tmp_path, name, writer, file):
    writer(tmp_path)
    path = tmp_path / file
    path.unlink()
    path.mkdir()
    with pytest.raises(MixemError, match="^A folder stands where the file .* belongs; move it away") as error:
        load_dataset(name, tmp_path)
    assert_one_sentence(error, path)


@pytest.mark.parametrize(("name", "writer", "file"), [
    ("cifar10", write_cifar10, "cifar-10-batches-py/data_batch_3"),
    ("fashion-mnist", write_fashion_mnist, "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz"),
    ("stl10", write_stl10, "stl10_binary/test_X.bin"),
    ("stl10", write_stl10, "stl10_binary/train_y.bin"),
])
def test_unreadable_file(tmp_path, monkeypatch, name, writer, file):
    # Tests often run as root, whom chmod 000 does not stop: mixem.data's open() is made to refuse instead.
    writer(tmp_path)
    denied = tmp_path / file

    def open_as_another_user(path, *args, **kwargs):
        if Path(path) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(mixem.data, "open", open_as_another_user, raising=False)
    with pytest.raises(MixemError, match=r"cannot be read \(permission denied\); check its permissions") as error:
        load_dataset(name, tmp_path)
    assert_one_sentence(error, denied)


def test_folder_that_cannot_be_looked_into(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    is_file = Path.is_file

    def is_file_as_another_user(path):
        if path.parent == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)

    monkeypatch.setattr(Path, "is_file", is_file_as_another_user)
    with pytest.raises(MixemError, match="permission denied") as error:
        load_dataset("cifar10", tmp_path)
    assert_one_sentence(error, folder / "data_batch_1")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_for_real(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").chmod(0)
    with pytest.raises(MixemError, match="permission denied") as error:
        load_dataset("cifar10", tmp_path)
    assert_one_sentence(error, folder / "test_batch")


def test_only_fashion_mnist_files_may_be_gzipped(tmp_path):
    folder = write_cifar10(tmp_path)
    batch = folder / "data_batch_2"
    (folder / "data_batch_2.gz").write_bytes(gzip.compress(batch.read_bytes()))
    batch.unlink()  # the loader reads plain pickles: a gzipped one is not the file it needs
    with pytest.raises(DataNotFoundError, match="data_batch_2"):
        load_dataset("cifar10", tmp_path)


def test_command_line_refuses_float_pixels_in_one_sentence(tmp_path, capsys):
    folder = write_cifar10(tmp_path, test_data=RNG.random((2, 3072)))
    message = refusal(mixem.data.main, capsys, tmp_path, "cifar10", "--data-dir", tmp_path)
    assert_one_sentence(message.removeprefix("error: "), folder / "test_batch")
