"""Experiment configuration: one dataclass per concern, defaults equal to the authors' (MIXEM.md).

Field names are unique across the concerns, so a run's whole config is also a flat
``{field: value}`` dict: that is what the command line, Ray Tune and the Parquet columns use.
Machine paths (data and output folders) are not config: they are arguments of ``train``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from mixem.errors import MixemError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    image_size: int  # images are square: (channels, image_size, image_size)
    folder: str | None = None  # the sub-folder of --data-dir its files live in (torchvision's layout)
    splits: tuple[str, ...] = ("train", "test")  # the names mixem.data loads, in its order
    unlabelled: tuple[str, ...] = ()  # the splits among them without labels (labels -1): never evaluated on

    def check_split(self, spec: str, flag: str, *, labelled: bool) -> None:
        """Raise MixemError (one sentence naming the fix) if the "+"-joined `spec` names a split this dataset
        lacks or, when `labelled` (an evaluation split), one without labels; `flag` is the option it came from."""
        names = spec.split("+")
        unknown = [split for split in names if split not in self.splits]
        unlabelled = [split for split in names if labelled and split in self.unlabelled]
        if not unknown and not unlabelled:
            return
        bad = (unknown or unlabelled)[0]
        subject = f"{flag} {spec}" if names == [bad] else f"{flag} {spec} includes {bad}, which"
        if unknown:
            raise MixemError(
                f"{subject} is not a split of {self.name}; choose from {', '.join(self.splits)} (joined with +)."
            )
        choices = " or ".join(split for split in self.splits if split not in self.unlabelled)
        raise MixemError(f"{subject} has no labels; evaluate on {choices}.")


# The datasets by name (mixem.data loads them); here, so that config and the sweep's driver need no torch.
DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", 10, 1, 8),
        DatasetInfo("fashion-mnist", 10, 1, 28, "FashionMNIST/raw"),
        DatasetInfo("cifar10", 10, 3, 32, "cifar-10-batches-py"),
        DatasetInfo("cifar100-20", 20, 3, 32, "cifar-100-python"),
        DatasetInfo("stl10", 10, 3, 96, "stl10_binary", ("train", "test", "unlabeled"), unlabelled=("unlabeled",)),
    )
}


def missing_data_dir_message(dataset: str | None, data_dir, *, download_flag: bool = True) -> str:
    """The sentence for a --data-dir that is not a folder, naming where `dataset`'s files would go."""
    folder = DATASETS[dataset].folder if dataset in DATASETS else None
    where = f"; {dataset} reads its files from {data_dir}/{folder}" if folder else ""
    fix = "pass the folder that holds the datasets" + (" (or add --download)" if download_flag else "")
    return f"--data-dir {data_dir} is not a folder{where}; {fix}."


# The loss weights, one per extra term of the objective (0 switches a term off).
LOSS_WEIGHTS = ("w_entropy", "w_instance", "w_pull", "w_push")


def _field(default, help: str, choices: tuple | None = None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class DataConfig:
    dataset: str = _field("digits", "dataset name", tuple(DATASETS))
    train_split: str = _field("train+test", "images trained on (no labels are used), as the authors: train+test")
    eval_split: str = _field("test", "labelled images the clustering is evaluated on")
    stl10_unlabeled: bool = _field(False, "STL10 only: also train on the 100k unlabelled images")
    val_fraction: float = _field(
        0.05, "share of the training images held out (fixed by the seed) for the label-free validation loss"
    )


@dataclass
class AugmentConfig:
    """SimCLR augmentations per view, applied to whole batches (mixem.augment)."""

    crop_scale_min: float = _field(0.08, "random resized crop: smallest area share")
    crop_scale_max: float = _field(1.0, "random resized crop: largest area share")
    flip_p: float = _field(0.5, "probability of a horizontal flip")
    jitter_p: float = _field(0.8, "probability of colour jitter")
    brightness: float = _field(0.8, "colour jitter: brightness strength")
    contrast: float = _field(0.8, "colour jitter: contrast strength")
    saturation: float = _field(0.8, "colour jitter: saturation strength (colour images only)")
    hue: float = _field(0.2, "colour jitter: hue strength, at most 0.5 (colour images only)")
    grayscale_p: float = _field(0.2, "probability of grayscale (colour images only)")
    blur_p: float = _field(0.5, "probability of Gaussian blur (kernel ~10%% of the image side)")
    blur_sigma_min: float = _field(0.1, "Gaussian blur: smallest sigma in pixels")
    blur_sigma_max: float = _field(2.0, "Gaussian blur: largest sigma in pixels")


@dataclass
class ModelConfig:
    backbone: str = _field("resnet18", "feature extractor", ("resnet18", "small_cnn"))
    cnn_width: int = _field(32, "small_cnn only: channels of its first block (then 2x, 4x); features = 4x")
    head: str = _field("mixture", "projection head: MIX'EM's mixture, or SimCLR's single MLP", ("mixture", "simclr"))
    num_components: int = _field(10, "K, the number of mixture components")
    embed_dim: int = _field(32, "dimension of each component's embedding")
    hidden_dim: int = _field(512, "hidden width of the component and gate MLPs")


@dataclass
class LossConfig:
    temperature: float = _field(0.5, "NT-Xent temperature")
    w_entropy: float = _field(2.0, "weight of term (i), the marginal entropy (subtracted)")
    w_instance: float = _field(0.1, "weight of term (ii), the per-instance term")
    instance_form: str = _field(
        "max_prob",
        "form of term (ii): max_prob is the authors' code (1 - max pi, behind the published numbers), "
        "entropy the paper's per-instance entropy",
        ("max_prob", "entropy"),
    )
    w_pull: float = _field(0.1, "weight of term (iii) pull (embeddings to their component mean)")
    w_push: float = _field(0.05, "weight of term (iii) push (component means apart)")


@dataclass
class OptimConfig:
    lr: float = _field(1e-4, "Adam learning rate")
    weight_decay: float = _field(1e-5, "Adam weight decay")
    batch_size: int = _field(512, "images per batch (across all workers)")
    epochs: int = _field(200, "training epochs")
    constant_lr_epochs: int = _field(10, "epochs at constant lr before the cosine decay")
    seed: int = _field(0, "random seed (model init, batches, augmentations, K-means)")


@dataclass
class EvalConfig:
    eval_every: int = _field(10, "evaluate the clustering every N epochs (0: only after the last epoch)")
    kmeans_n_init: int = _field(50, "k-means++ restarts in the final evaluation, as the authors")
    kmeans_max_iter: int = _field(
        10, "iterations of every K-means, as the authors: few enough that the initialisation still shows"
    )
    interim_kmeans_n_init: int = _field(
        3, "k-means++ restarts in evaluations before the last epoch: they only rank runs against each other (ASHA)"
    )
    eval_batch_size: int = _field(1024, "batch size when computing representations")
    kmeans_noise_seeds: int = _field(
        5, "K-means random states the final evaluation refits the reported clusterings with, to record the spread "
        "of their ACC (within-model noise); below 2: not measured"
    )


CONCERNS = {
    "data": DataConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "eval": EvalConfig,
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_flat(cls, values: dict) -> Config:
        """Build a config from ``{field: value}``, starting from the defaults; unknown names are an error."""
        config = cls()
        for name, value in values.items():
            concern = FIELD_CONCERN.get(name)
            if concern is None:
                raise MixemError(f"Unknown config field {name!r}; run `python -m mixem.train --help` for the list.")
            setattr(getattr(config, concern), name, _coerce(name, value))
        return config

    @classmethod
    def for_dataset(cls, dataset: str, overrides: dict | None = None) -> Config:
        """The authors' defaults, then the dataset's preset (``DATASET_PRESETS``), then ``overrides``."""
        if dataset not in DATASET_PRESETS:
            raise MixemError(f"Unknown dataset {dataset!r}; choose one of {', '.join(DATASET_PRESETS)}.")
        return cls.from_flat({"dataset": dataset, **DATASET_PRESETS[dataset], **(overrides or {})})

    def to_flat(self) -> dict:
        return {
            name: value for concern in CONCERNS for name, value in dataclasses.asdict(getattr(self, concern)).items()
        }

    def validate(self) -> Config:
        """Raise MixemError (one sentence naming the fix) for a config that cannot train."""
        flat = self.to_flat()
        for name, value in flat.items():
            choices = FIELDS[name].metadata["choices"]
            if choices and value not in choices:
                raise MixemError(f"--{_flag(name)} must be one of {', '.join(choices)}, not {value!r}.")
            if isinstance(value, float) and not math.isfinite(value):
                raise MixemError(f"--{_flag(name)} must be a finite number, not {value}.")
        info = DATASETS[flat["dataset"]]
        info.check_split(flat["train_split"], "--train-split", labelled=False)
        info.check_split(flat["eval_split"], "--eval-split", labelled=True)
        if "unlabeled" in flat["train_split"].split("+") and not flat["stl10_unlabeled"]:
            raise MixemError("--train-split includes unlabeled, which stl10 loads only with --stl10-unlabeled; add "
                             "it, or train on train+test.")
        for name in (*LOSS_WEIGHTS, "weight_decay", "constant_lr_epochs", "eval_every", "kmeans_noise_seeds"):
            if flat[name] < 0:
                raise MixemError(f"--{_flag(name)} must be >= 0 (0 switches it off), not {flat[name]}.")
        for name in (
            "lr",
            "temperature",
            "batch_size",
            "epochs",
            "num_components",
            "embed_dim",
            "hidden_dim",
            "cnn_width",
            "kmeans_n_init",
            "kmeans_max_iter",
            "interim_kmeans_n_init",
            "eval_batch_size",
        ):
            if flat[name] <= 0:
                raise MixemError(f"--{_flag(name)} must be > 0, not {flat[name]}.")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            if not 0 <= flat[name] <= 1:
                raise MixemError(f"--{_flag(name)} is a probability and must lie in [0, 1], not {flat[name]}.")
        if not 0 <= flat["seed"] < 2**32:
            raise MixemError(f"--seed must lie in [0, 2**32) (scikit-learn's range), not {flat['seed']}.")
        if flat["batch_size"] < 2:
            raise MixemError(f"--batch-size must be at least 2 (NT-Xent needs a negative), not {flat['batch_size']}.")
        if not 0 <= flat["val_fraction"] < 0.5:
            raise MixemError(
                f"--val-fraction must lie in [0, 0.5) (0: no validation loss), not {flat['val_fraction']}."
            )
        if not 0 < flat["crop_scale_min"] <= flat["crop_scale_max"] <= 1:
            raise MixemError("Crop scales must satisfy 0 < --crop-scale-min <= --crop-scale-max <= 1.")
        if not 0 <= flat["hue"] <= 0.5:
            raise MixemError(f"--hue must lie in [0, 0.5], not {flat['hue']}.")
        if flat["stl10_unlabeled"] and flat["dataset"] != "stl10":
            raise MixemError(f"--stl10-unlabeled is for stl10 only; {flat['dataset']} has no unlabelled images.")
        if flat["head"] == "simclr":
            extra = [n for n in LOSS_WEIGHTS if flat[n] != 0]
            if extra:
                raise MixemError(
                    f"The SimCLR head has no mixture, so {', '.join(extra)} must be 0; set them to 0 "
                    "(--preset simclr of mixem.train and tune/ablate.py does)."
                )
        return self


FIELDS = {f.name: f for concern in CONCERNS.values() for f in dataclasses.fields(concern)}
FIELD_CONCERN = {f.name: name for name, concern in CONCERNS.items() for f in dataclasses.fields(concern)}

# Per-dataset presets, sized for the machine each dataset is usually run on: digits and
# Fashion-MNIST are the CPU-scale datasets (small CNN, few epochs, a larger lr to match the
# short schedule); CIFAR and STL10 keep the authors' GPU settings. Grey images get milder crops
# and no colour jitter, grayscale or blur; flips would turn digits into other symbols.
_GREY = {"jitter_p": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.0, "hue": 0.0, "grayscale_p": 0.0}
DATASET_PRESETS: dict[str, dict] = {
    "digits": {
        **_GREY,
        "backbone": "small_cnn",
        "crop_scale_min": 0.5,
        "flip_p": 0.0,
        "blur_p": 0.0,
        "hidden_dim": 128,
        "lr": 1e-3,
        "batch_size": 256,
        "epochs": 60,
        "constant_lr_epochs": 5,
        "eval_every": 0,
    },
    "fashion-mnist": {
        **_GREY,
        "backbone": "small_cnn",
        "cnn_width": 16,
        "crop_scale_min": 0.3,
        "blur_p": 0.0,
        "hidden_dim": 256,
        "lr": 1e-3,
        "batch_size": 256,
        "epochs": 10,
        "constant_lr_epochs": 2,
        "eval_every": 5,
    },
    "cifar10": {},
    "cifar100-20": {"num_components": 20},
    "stl10": {},
}


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _coerce(name: str, value):
    """``value`` as the field's type, refusing what would change its meaning: a float for an int field
    (``num_components=10.7`` is not 10), a bool for a number (``w_push=true`` is not 1.0), a number for a
    bool or a string. Ints for floats and NumPy scalars (what Tune and JSON hand over) are taken."""
    kind = type(FIELDS[name].default)
    wanted = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[kind]
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
            return int(value)
    elif kind is float:
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            return float(value)
    elif isinstance(value, str):
        return value
    raise MixemError(f"--{_flag(name)} must be {wanted}, not {value!r}.")
