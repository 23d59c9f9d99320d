"""A sweep's settings: every flag, resolved and checked once, frozen; what ``sweep.json`` holds; what a
resume may change.

The command line (``tune/arguments.py``) makes one ``Settings``; nothing past it sees argparse. The
settings say what runs (``dataset``, ``max_epochs``, ``metric``, ``--space``, ... and the experiment's
own, ``Search`` for ``tune/sweep.py``, ``Ablation`` for ``tune/ablate.py``) and where it runs
(``Placement``): a resumed sweep keeps the first and may take the second anew (``resumed``).

    sweep.json = {"kind": "sweep" | "ablation", "name": ..., "storage": ..., "args": {flag: value}, "runs": [...]}

``args`` holds every field flat, under its flag's name, as the command line would give it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

from mixem.config import DATASET_PRESETS, Config
from mixem.errors import MixemError
from mixem.presets import ABLATIONS, COMPONENT_ABLATION, LOSS_ABLATION
from mixem.scores import FIXED_VARIANT, METRIC_KEYS, VALIDATION_KEYS

# What --smoke-test sets unless given explicitly: tiny, for CI and a first try.
SMOKE = {"num_samples": 4, "max_epochs": 2, "grace_epochs": 1, "seeds": 1}
SMOKE_FIXED = {"kmeans_n_init": 2, "interim_kmeans_n_init": 2, "eval_every": 1}
SMOKE_PRESETS = ("simclr", "mixem")
DEFAULT_SEEDS = 3
SEARCHERS = ("optuna", "random", "grid")
BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class Placement:
    """Where and how the trials run: the flags ``--resume`` takes anew."""

    address: str | None = None
    max_concurrent: int | None = None
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: 1 when the cluster's node types have GPUs, else 0
    backend: str = "auto"
    max_failures: int = 2
    data_dir: str | None = None
    storage_shared: bool = False
    compile: bool = False
    verbose: bool = False


WHERE = tuple(f.name for f in fields(Placement))


@dataclass(frozen=True)
class Search:
    """``tune/sweep.py``: a searcher over ``--space``, and ASHA."""

    kind: ClassVar[str] = "sweep"
    script: ClassVar[str] = "tune/sweep.py"
    search: str = "optuna"
    num_samples: int | None = None  # None: 16, or one repeat of the grid
    grace_epochs: int | None = None  # None until resolved: max(1, max_epochs // 10)
    search_seed: int | None = None  # None: the training seed
    reduction_factor: float = 3.0


@dataclass(frozen=True)
class Ablation:
    """``tune/ablate.py``: every preset x seed once; nothing searched, nothing stopped early."""

    kind: ClassVar[str] = "ablation"
    script: ClassVar[str] = "tune/ablate.py"
    presets: tuple[str, ...] | None = None  # None until resolved: all, or SMOKE_PRESETS
    seeds: int | None = None  # None until resolved: DEFAULT_SEEDS


EXPERIMENTS = {Search.kind: Search, Ablation.kind: Ablation}


@dataclass(frozen=True)
class Settings:
    """One sweep or ablation, as resolved from its command line or its ``sweep.json``."""

    experiment: Search | Ablation
    dataset: str
    max_epochs: int
    output: Path
    name: str  # Ray's experiment name, unique: the sweep's folder in its storage
    storage: str  # absolute path or URI
    metric: str = f"{FIXED_VARIANT}_acc"
    seed: int = 0
    space: tuple[str, ...] = ()
    checkpoint_every: int = 0
    smoke_test: bool = False
    callback: tuple[str, ...] = ()
    placement: Placement = field(default_factory=Placement)

    @property
    def kind(self) -> str:
        return self.experiment.kind

    @property
    def searches(self) -> bool:
        return isinstance(self.experiment, Search)

    @property
    def experiment_path(self) -> str:
        return "/".join([self.storage.rstrip("/"), self.name])

    def base_overrides(self) -> dict:
        """Config fields every trial shares before --space: dataset, epochs, seed, and evaluation on every
        ASHA rung (rungs fall on multiples of --grace-epochs)."""
        grace = self.experiment.grace_epochs if self.searches else None
        base = {"dataset": self.dataset, "epochs": self.max_epochs, "seed": self.seed,
                "eval_every": grace or Config.for_dataset(self.dataset).eval.eval_every}
        return {**base, **(SMOKE_FIXED if self.smoke_test else {})}

    def resumed(self, placement_changes: dict) -> Settings:
        """These settings with the flags of ``WHERE`` in ``placement_changes`` taken anew (a resume)."""
        return replace(self, placement=replace(self.placement, **placement_changes))

    def to_json(self, runs: list[dict]) -> str:
        """The text of ``sweep.json``, with ``runs``: what each start and resume resolved."""
        flat = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("experiment", "placement", "output", "name", "storage")}
        flat.update(asdict(self.placement), **asdict(self.experiment))
        flat = {name: list(value) if isinstance(value, tuple) else value for name, value in flat.items()}
        return json.dumps({"kind": self.kind, "name": self.name, "storage": self.storage, "args": flat,
                           "runs": runs}, indent=2) + "\n"

    @classmethod
    def from_json(cls, saved: dict, output: Path) -> Settings:
        """The settings ``saved`` (a parsed ``sweep.json``) holds, its results in ``output``; TypeError,
        KeyError or ValueError when it is not one. Fields it lacks take their defaults."""
        args = saved["args"]
        if not isinstance(args, dict) or not all(isinstance(saved[k], str) for k in ("kind", "name", "storage")):
            raise TypeError("kind, name and storage must be text and args an object")
        experiment_type = EXPERIMENTS[saved["kind"]]

        def pick(kind) -> dict:
            return {f.name: _tupled(args[f.name]) for f in fields(kind) if f.name in args}

        top = {name: value for name, value in pick(cls).items() if name not in ("experiment", "placement", "output")}
        return cls(experiment=experiment_type(**pick(experiment_type)), placement=Placement(**pick(Placement)),
                   output=output, name=saved["name"], storage=saved["storage"], **top)


def _tupled(value):
    return tuple(value) if isinstance(value, list) else value


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# The smallest value of each number field: (minimum, whether the minimum itself is allowed).
_MINIMA = {
    **dict.fromkeys(("num_samples", "max_concurrent", "workers_per_trial", "max_epochs", "grace_epochs", "seeds"),
                    (1, True)),
    **dict.fromkeys(("max_failures", "gpus_per_worker", "checkpoint_every", "seed", "search_seed"), (0, True)),
    "cpus_per_worker": (0, False),
    "reduction_factor": (1, False),
}
_INTEGERS = {"num_samples", "max_concurrent", "workers_per_trial", "max_epochs", "grace_epochs", "seeds",
             "max_failures", "checkpoint_every", "seed", "search_seed"}


def _values(settings: Settings) -> dict:
    return {**{f.name: getattr(settings, f.name) for f in fields(settings)}, **asdict(settings.placement),
            **asdict(settings.experiment)}


def check_numbers(settings: Settings) -> None:
    """Every number in range and of its type (an int field takes no float or bool); None is unset."""
    values = _values(settings)
    for name, (minimum, inclusive) in _MINIMA.items():
        value = values.get(name)
        if value is None:
            continue
        kinds = (int,) if name in _INTEGERS else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise MixemError(f"{flag(name)} must be {'a whole' if name in _INTEGERS else 'a'} number, not "
                             f"{json.dumps(value)}.")
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            if name == "reduction_factor":
                raise MixemError(f"--reduction-factor must be a finite number more than 1, not {value}.")
            bound = f"at least {minimum:g}" if inclusive else f"more than {minimum:g}"
            raise MixemError(f"{flag(name)} must be {bound}, not {value}.")


def check(settings: Settings) -> None:
    """Everything a sweep's settings must satisfy, whether from the command line or a sweep.json."""
    check_numbers(settings)
    values = _values(settings)
    for name in ("dataset", "metric", "name", "storage", "backend"):
        if not isinstance(values[name], str):
            raise MixemError(f"{flag(name)} must be text, not {json.dumps(values[name])}.")
    for name in ("smoke_test", "storage_shared", "compile", "verbose"):
        if not isinstance(values[name], bool):
            raise MixemError(f"{flag(name)} must be true or false, not {json.dumps(values[name])}.")
    for name in ("space", "callback"):
        if not all(isinstance(item, str) for item in values[name]):
            raise MixemError(f"{flag(name)} must be a list of text, not {json.dumps(list(values[name]))}.")
    if settings.dataset not in DATASET_PRESETS:
        Config.for_dataset(settings.dataset)  # the sentence that lists the datasets
    if settings.metric not in METRIC_KEYS + VALIDATION_KEYS:
        raise MixemError(f"--metric {settings.metric!r} is not a score; use a key of mixem.scores.METRIC_KEYS or "
                         f"VALIDATION_KEYS such as {FIXED_VARIANT}_acc or val_loss.")
    if settings.placement.backend not in BACKENDS:
        raise MixemError(f"--backend {settings.placement.backend!r} is not one of {', '.join(BACKENDS)}.")
    if settings.searches:
        _check_search(settings)
    else:
        check_presets(settings.experiment.presets)


def _check_search(settings: Settings) -> None:
    search = settings.experiment
    if search.search not in SEARCHERS:
        raise MixemError(f"--search {search.search!r} is not one of {', '.join(SEARCHERS)}.")
    if search.grace_epochs is not None and search.grace_epochs > settings.max_epochs:
        raise MixemError(f"--grace-epochs ({search.grace_epochs}) cannot exceed --max-epochs ({settings.max_epochs}).")


def check_presets(presets: tuple[str, ...] | None) -> None:
    if presets is None:
        return
    if not presets:
        raise MixemError("--presets names no preset; name at least one, e.g. --presets simclr,mixem.")
    twice = sorted({name for name in presets if presets.count(name) > 1})
    if twice:
        raise MixemError(f"--presets names {', '.join(twice)} more than once; name each preset once "
                         "(--seeds sets the repeats).")
    unknown = [name for name in presets if name not in ABLATIONS]
    if unknown:
        raise MixemError(f"Unknown preset(s) {', '.join(unknown)}; choose from {', '.join(ABLATIONS)}.")


def with_defaults(settings: Settings) -> Settings:
    """The defaults that depend on other settings: --smoke-test's sizes for what was not given, the dataset
    preset's epochs, ASHA's grace period, the ablation's presets and seeds."""
    smoke = SMOKE if settings.smoke_test else {}
    max_epochs = settings.max_epochs or smoke.get("max_epochs") or Config.for_dataset(settings.dataset).optim.epochs
    experiment = settings.experiment
    if isinstance(experiment, Search):
        num_samples = experiment.num_samples or smoke.get("num_samples")
        grace = experiment.grace_epochs or smoke.get("grace_epochs") or max(1, max_epochs // 10)
        experiment = replace(experiment, num_samples=num_samples, grace_epochs=grace)
    else:
        presets = experiment.presets or (SMOKE_PRESETS if settings.smoke_test else
                                         tuple(LOSS_ABLATION + COMPONENT_ABLATION))
        experiment = replace(experiment, presets=presets, seeds=experiment.seeds or smoke.get("seeds") or DEFAULT_SEEDS)
    return replace(settings, max_epochs=max_epochs, experiment=experiment)
