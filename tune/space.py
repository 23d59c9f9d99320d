"""The search space of ``tune/sweep.py``, and ``--space``, which narrows or fixes it.

Ranges sit around the authors' defaults (MIXEM.md): the loss weights span about a decade on
either side, K spans 1x to 4x the class count, as the paper's K ablation (10, 20, 40 for 10
classes). ``or_zero`` marks a weight whose term may also be switched off: the searcher first
draws "off or on" (an even choice) and, when on, a log-uniform value. A log scale cannot reach 0,
and a single range from 0 would spend most draws on values too small to matter; the two-step
draw searches both "is this term worth having" and "how strong" (the loss ablation, searched).
The marginal entropy (i) never gets ``or_zero``: without it the mixture collapses to one
component (the paper's ablation), so a trial without it is wasted.

``grid`` lists the values ``--search grid`` tries. Nothing here imports Ray or torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from mixem.config import DATASETS, FIELDS, Config
from mixem.errors import MixemError
from mixem.presets import ABLATIONS
from mixem.scores import SIMCLR_VARIANT, VALIDATION_KEYS, measured_by


@dataclass(frozen=True)
class LogUniform:
    """A positive value drawn log-uniformly from [low, high], or 0 when ``or_zero`` draws "off"."""

    low: float
    high: float
    grid: tuple[float, ...]
    or_zero: bool = False


@dataclass(frozen=True)
class Choice:
    """One of ``values``, each equally likely."""

    values: tuple


def search_space(num_classes: int, default_lr: float) -> dict[str, LogUniform | Choice]:
    """The searched config fields. ``default_lr`` is the dataset preset's (mixem.config.DATASET_PRESETS)."""
    return {
        "w_entropy": LogUniform(0.5, 8.0, grid=(1.0, 2.0, 4.0)),
        "w_instance": LogUniform(0.01, 1.0, grid=(0.0, 0.1, 0.5), or_zero=True),
        "w_pull": LogUniform(0.01, 1.0, grid=(0.0, 0.1, 0.5), or_zero=True),
        "w_push": LogUniform(0.005, 0.5, grid=(0.0, 0.05, 0.2), or_zero=True),
        "num_components": Choice((num_classes, 2 * num_classes, 3 * num_classes, 4 * num_classes)),
        "lr": LogUniform(default_lr / 10, default_lr * 10, grid=(default_lr / 3, default_lr, default_lr * 3)),
        "temperature": LogUniform(0.1, 1.0, grid=(0.2, 0.5)),
    }


def parse_space_value(text: str):
    """``"0.1"`` -> 0.1, ``"10"`` -> 10, ``"true"`` -> True, anything else stays a string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_space_spec(value):
    """One --space value, as text or JSON, into ("fixed", v), ("range", lo, hi, or_zero) or ("choice", values)."""
    if isinstance(value, list):
        if not value:
            raise ValueError("a list of choices needs at least one value")
        return ("choice", tuple(value))
    if not isinstance(value, str):
        return ("fixed", value)
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise ValueError("a value is empty")
    ranges = [item for item in items if ":" in item]
    if ranges:
        others = [parse_space_value(item) for item in items if ":" not in item]
        if len(ranges) > 1 or any(other != 0 for other in others):
            raise ValueError("a range takes the form LO:HI, or 0,LO:HI to allow 0")
        try:
            low, high = (float(part) for part in ranges[0].split(":"))
        except ValueError:
            raise ValueError("LO and HI must be numbers") from None
        return ("range", low, high, bool(others))
    if len(items) > 1:
        return ("choice", tuple(parse_space_value(item) for item in items))
    return ("fixed", parse_space_value(items[0]))


def read_space_args(tokens: list[str]) -> dict:
    """``--space`` tokens (NAME=VALUE, or JSON files) into ``{name: value}``, in order."""
    specs = {}
    for token in tokens:
        if "=" in token:
            name, value = token.split("=", 1)
            _add(specs, name.strip(), value)
            continue
        path = Path(token)
        if not path.is_file():
            raise MixemError(f"--space {token!r} is neither NAME=VALUE nor a JSON file; see --help.")
        try:
            loaded = json.loads(path.read_text())
        except OSError as error:
            raise MixemError(f"Cannot read --space file {path} ({error.strerror or error}); check its "
                             "permissions.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise MixemError(f"--space file {path} is not valid JSON ({error}); fix it or pass NAME=VALUE.") from None
        if not isinstance(loaded, dict):
            raise MixemError(f"--space file {path} must hold a JSON object of {{NAME: value}}.")
        for name, value in loaded.items():
            _add(specs, name, value)
    return specs


def _add(specs: dict, name: str, value) -> None:
    if name in specs:
        raise MixemError(f"--space sets {name} twice; keep one value (a list of choices goes in one entry: "
                         f"{name}=A,B).")
    specs[name] = value


def resolve_space(dataset: str, specs: dict, base: dict, *, search: bool) -> tuple[dict, dict]:
    """Apply ``--space`` to the default search space: returns (fixed overrides, searched space), both
    checked, so that a bad name or value fails here with one sentence rather than in every trial.
    With ``search=False`` (the ablation) nothing is searched and --space may only fix values."""
    defaults = Config.for_dataset(dataset)
    space = search_space(DATASETS[dataset].num_classes, defaults.optim.lr) if search else {}
    fixed = dict(base)
    for name, value in specs.items():
        if name in ("dataset", "epochs"):
            raise MixemError(f"--space cannot set {name}; use --{'dataset' if name == 'dataset' else 'max-epochs'}.")
        if name not in FIELDS:
            raise MixemError(f"--space names unknown field {name!r}; use a config field (python -m mixem.train "
                             f"--help), e.g. one of the searched {', '.join(search_space(10, 1e-3))}.")
        try:
            spec = parse_space_spec(value)
        except ValueError as error:
            raise MixemError(f"--space {name}={value!r} cannot be read: {error}.") from None
        space.pop(name, None)
        fixed.pop(name, None)
        if spec[0] != "fixed" and not search:
            raise MixemError(f"--space {name}={value} searches, but this run searches nothing; give one value.")
        if spec[0] == "fixed":
            fixed[name] = spec[1]
        elif spec[0] == "choice":
            space[name] = Choice(spec[1])
        else:
            _, low, high, or_zero = spec
            if not isinstance(FIELDS[name].default, float):
                raise MixemError(f"--space {name} is not a real number, so it takes values A,B,C, not a range.")
            if not 0 < low < high or not math.isfinite(high):
                raise MixemError(f"--space {name}={value} needs 0 < LO < HI for a log-uniform range.")
            grid = ((0.0,) if or_zero else ()) + (low, math.sqrt(low * high), high)
            space[name] = LogUniform(low, high, grid=grid, or_zero=or_zero)
    for name in space:
        fixed.pop(name, None)
    # Check each value a trial may see once, on top of the fixed fields.
    check_config(dataset, fixed)
    for name, param in space.items():
        values = param.values if isinstance(param, Choice) else (param.low, param.high) + ((0.0,) * param.or_zero)
        for value in values:
            check_config(dataset, {**fixed, name: value})
    return fixed, space


def check_measurable(metric: str, dataset: str, fixed: dict, space: dict) -> None:
    """A search ranks its trials by ``metric``: refuse one that some trial could never measure (a mixture-only
    score with the SimCLR head; a validation loss with no validation images), rather than run it blind."""
    def values(name: str) -> tuple:
        if name in space:
            param = space[name]
            return param.values if isinstance(param, Choice) else (param.low, param.high) + (0.0,) * param.or_zero
        return (Config.for_dataset(dataset, fixed).to_flat()[name],)

    if any(not measured_by(metric, head) for head in values("head")):
        raise MixemError(f"--metric {metric} needs the mixture head, and the SimCLR head (--space head) has no "
                         f"mixture components to measure it with; search {SIMCLR_VARIANT}_acc or val_contrastive "
                         "instead.")
    if metric in VALIDATION_KEYS and 0 in values("val_fraction"):
        raise MixemError(f"--metric {metric} is measured on the validation images, and --space val_fraction=0 holds "
                         "none out; hold some out (e.g. val_fraction=0.05) or search a clustering score.")


def check_config(dataset: str, overrides: dict) -> Config:
    return Config.for_dataset(dataset, overrides).validate()


def authors_point(space: dict, fixed: dict) -> dict:
    """The authors' configuration (preset ``mixem`` on the dataset's preset, with the fixed fields) as a
    point of ``space`` for Optuna to try first: its values under Optuna's names (``<name>_on`` for a weight
    that may be off). A value the space cannot draw (a range narrowed by --space) is left to the searcher."""
    values = Config.for_dataset(fixed["dataset"], {**fixed, **ABLATIONS["mixem"]}).to_flat()
    point = {}
    for name, param in space.items():
        value = values[name]
        if isinstance(param, Choice):
            if value in param.values:
                point[name] = value
        elif param.or_zero and value == 0:
            point[f"{name}_on"] = False
        elif param.low <= value <= param.high:
            point.update({f"{name}_on": True} if param.or_zero else {}, **{name: value})
    return point


def grid_space(space: dict) -> dict:
    """Tune's ``grid_search`` spec of every searched field, from each one's grid values."""
    return {name: {"grid_search": list(param.values if isinstance(param, Choice) else param.grid)}
            for name, param in space.items()}


def grid_size(space: dict) -> int:
    return math.prod(len(param.values if isinstance(param, Choice) else param.grid) for param in space.values())


class OptunaSpace:
    """Optuna define-by-run space: draws each searched field of ``space`` and returns the fixed ones.

    A weight with ``or_zero`` is drawn in two steps, ``<name>_on`` (True/False), then the value only
    when on; the draw is conditional, so TPE learns the value only from trials that used it.
    """

    def __init__(self, space: dict, fixed: dict):
        self.space, self.fixed = space, fixed

    def __call__(self, trial) -> dict:
        zeroed = {}
        for name, param in self.space.items():
            if isinstance(param, Choice):
                trial.suggest_categorical(name, list(param.values))
            elif param.or_zero and not trial.suggest_categorical(f"{name}_on", [True, False]):
                zeroed[name] = 0.0
            else:
                trial.suggest_float(name, param.low, param.high, log=True)
        return {**self.fixed, **zeroed}
