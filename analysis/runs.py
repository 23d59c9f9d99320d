"""Load sweep output folders (``trials.parquet`` and ``epochs.parquet``) into pandas DataFrames.

A sweep folder is what ``tune/sweep.py`` or ``tune/ablate.py`` wrote to ``--output``. Several
folders (an ablation and an Optuna search, say) load into one frame, told apart by ``sweep``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mixem.config import LOSS_WEIGHTS
from mixem.errors import MixemError
from mixem.scores import FIXED_VARIANT, SCORE_KEYS
from tune.results import EPOCHS_FILE, SETTINGS_FILE, STATUSES, TRIALS_FILE

CONFIG_COLUMNS = [f"config/{name}" for name in ("dataset", "seed", "head", "num_components", *LOSS_WEIGHTS,
                                                  "instance_form", "epochs")]
# Every score an evaluation records: the clustering scores, then the label-free validation losses.
TRIAL_COLUMNS = (["trial_id", "preset", "dataset", "status", "error", *CONFIG_COLUMNS]
                 + [f"{stage}/{key}" for stage in ("final", "best") for key in SCORE_KEYS]
                 + ["epochs", "wall_seconds", "gpu_seconds", "cpu_seconds"])
# Columns the analysis reads; others (trial_seconds, train_images, ...) are kept as they come.
EPOCH_COLUMNS = ["trial_id", "preset", "epoch", "loss_total", "loss_contrastive", "epoch_seconds", "eval_seconds",
                 *SCORE_KEYS]
# Of the columns read, these hold text and every other one but config/<field> (of its field's type) numbers.
TEXT_COLUMNS = ("trial_id", "preset", "dataset", "status", "error")
_FIX = "pass the --output folder of a tune/sweep.py or tune/ablate.py run"
# The fix for a corrupt file of a sweep.
RESTORE = "re-run the sweep, or restore the file from its copy in the sweep's --storage"
# The values a column of a score (by the end of its name) or a count can hold; any other number column (a loss,
# the learning rate) may be any finite number. A value outside is garbage no table should average.
BOUNDS = {("_acc", "_nmi", "acc_max", "pi_max_mean", "component_purity"): (0.0, 1.0),
          ("_ari", "_silhouette"): (-1.0, 1.0),
          ("_seed_std",): (0.0, 1.0),
          ("_seconds", "epochs", "components_used"): (0.0, float("inf")),
          ("epoch",): (1.0, float("inf"))}


def load_runs(*paths: str | Path) -> pd.DataFrame:
    """The trials of one or more sweep folders (or their ``trials.parquet`` files), one row per trial::

        sweep  trial_id   preset  dataset  status    error  config/<field>..  final/<M>..  best/<M>..  epochs  *_seconds
        abl    mixem_s0   mixem   digits   finished         seed=0 w_pull=.1  0.81         0.86        30      412.0
        abl    simclr_s0  simclr  digits   finished         seed=0 w_pull=0   0.74         0.75        30      388.0
        opt    3f2a_001           digits   errored   OOM..  seed=0 w_pull=.3  NaN          NaN         4       51.0

    ``sweep`` names the folder a row came from; every other column is the sweep's (README, "Results"):
    ``preset`` is "" in a search, an ablation preset otherwise ("given": the configuration --space
    fixed); ``config/<field>`` is every flat config field; ``final/<M>`` is a score at the last
    evaluation and ``best/<M>`` at the evaluation where the sweep's --metric was best, for every
    ``M`` in ``SCORE_KEYS`` (``mixem.scores.METRIC_KEYS``, e.g. ``kmeans_h_l2_acc``, then
    ``VALIDATION_KEYS``, e.g. ``val_loss``);
    ``*_seconds`` are ``wall_seconds``, ``gpu_seconds`` (wall x GPUs held), ``cpu_seconds``.
    Raises MixemError (one sentence naming the fix) for a path that does not exist, a folder
    without trials, a folder given twice, a file that is not a sweep's, or one that is corrupt (a
    column that holds text where numbers belong or numbers where text belongs, a trial or an epoch twice,
    an unknown status, a value that is infinite or out of its range).
    """
    frames = []
    for label, file in _resolve(paths, TRIALS_FILE):
        frame = _read(file, TRIAL_COLUMNS)
        if frame.empty:
            raise MixemError(f"{file} holds no trials yet; wait until a trial of the sweep finishes, or "
                             f"pass another folder.")
        repeated = frame["trial_id"].duplicated()
        if repeated.any():  # a sweep writes each trial's row once
            raise MixemError(f"{file} is corrupt: trial {frame.loc[repeated, 'trial_id'].iloc[0]!r} appears twice "
                             f"in it; {RESTORE}.")
        unknown = sorted(set(frame["status"]) - set(STATUSES))
        if unknown:
            raise MixemError(f"{file} is corrupt: status {unknown[0]!r} is none of {', '.join(STATUSES)}; {RESTORE}.")
        _check_values(file, frame, TRIAL_COLUMNS)
        frames.append(frame.assign(sweep=label))
    trials = pd.concat(frames, ignore_index=True)
    return trials[["sweep", *(c for c in trials.columns if c != "sweep")]]


def load_epochs(*paths: str | Path) -> pd.DataFrame:
    """The per-epoch rows of the same folders (their ``epochs.parquet``), one row per (trial, epoch)::

        sweep  trial_id  preset  epoch  loss_total  loss_<term>...  lr  epoch_seconds  eval_seconds  <M>...
        abl    mixem_s0  mixem   1      5.91        ...                 13.2           0.0           NaN
        abl    mixem_s0  mixem   2      5.42        ...                 13.0           4.1           0.61

    Scores ``<M>`` (every key of ``SCORE_KEYS``) are NaN at epochs that were not evaluated. Columns
    this version does not read (``trial_seconds``, absent from older sweeps) are kept when present.
    Join to ``load_runs`` on (sweep, trial_id).
    """
    frames = []
    for label, file in _resolve(paths, EPOCHS_FILE):
        frame = _read(file, EPOCH_COLUMNS)
        repeated = frame.duplicated(["trial_id", "epoch"])
        if repeated.any():  # the sweep keeps one row per (trial, epoch): a repeat would count twice
            first = frame[repeated].iloc[0]
            raise MixemError(f"{file} is corrupt: epoch {first['epoch']} of trial {first['trial_id']!r} appears "
                             f"twice in it; {RESTORE}.")
        _check_values(file, frame, EPOCH_COLUMNS)
        frames.append(frame.assign(sweep=label))
    epochs = pd.concat(frames, ignore_index=True)
    return epochs[["sweep", *(c for c in epochs.columns if c != "sweep")]]


def folders_of(paths) -> list[Path]:
    """The sweep folder of each path (a folder, or a file inside one); MixemError if no path is given,
    one does not exist, or two are of the same folder (its trials would count twice)."""
    if not paths:
        raise MixemError(f"No sweep folder given; {_FIX}.")
    paths = [Path(path) for path in paths]
    for path in paths:
        if not path.exists():
            raise MixemError(f"{path} does not exist; {_FIX}.")
    folders, seen = [path if path.is_dir() else path.parent for path in paths], {}
    for path, folder in zip(paths, folders, strict=True):
        if folder.resolve() in seen:
            raise MixemError(f"{seen[folder.resolve()]} and {path} are the same sweep folder; pass each sweep "
                             f"folder once.")
        seen[folder.resolve()] = path
    return folders


def _resolve(paths, file_name: str) -> list[tuple[str, Path]]:
    """(label, file) per path: a sweep folder, or a Parquet file inside one."""
    folders = folders_of(paths)
    paths = [Path(path) for path in paths]
    names = [folder.resolve().name for folder in folders]
    resolved = []
    for path, folder in zip(paths, folders, strict=True):
        # A Parquet file given by name is read as the trials; its epochs are the folder's.
        named = path.is_file() and file_name == TRIALS_FILE and path.suffix == ".parquet" and path.name != EPOCHS_FILE
        file = path if named else folder / file_name
        if not file.is_file():
            raise MixemError(f"{folder} holds no {file_name}, so no sweep has written results there yet; {_FIX}.")
        # Folders are told apart by name; two folders of the same name keep their paths as given.
        name = folder.resolve().name
        resolved.append((name if names.count(name) == 1 else str(folder), file))
    return resolved


def _read(file: Path, required: list[str]) -> pd.DataFrame:
    try:
        table = pq.read_table(file)
    except (OSError, pa.ArrowException) as error:
        reason = str(error).split(". ")[0].split("': ")[-1]  # Arrow's first sentence, less the path it repeats
        raise MixemError(f"{file} is not a readable Parquet file ({reason}); {RESTORE}.") from None
    missing = [column for column in required if column not in table.column_names]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise MixemError(f"{file} lacks the columns {shown}, so it was not written by this version of the "
                         f"sweep; {_FIX}.")
    for column in required:
        expected = "text" if column in TEXT_COLUMNS else None if column.startswith("config/") else "numbers"
        held = _holds(table.schema.field(column).type)
        if expected is not None and held != expected:
            raise MixemError(f"{file} is corrupt: column {column} holds {held} where {expected} "
                             f"{'belongs' if expected == 'text' else 'belong'}; {RESTORE}.")
    return table.to_pandas()


def value_bounds(column: str) -> tuple[float, float]:
    """The lowest and highest value a score or count named ``column`` can hold (``BOUNDS``)."""
    return next((bound for ends, bound in BOUNDS.items() if column.endswith(ends)), (-math.inf, math.inf))


def _check_values(file: Path, frame: pd.DataFrame, required: list[str]) -> None:
    """Every number column the analysis reads is finite and within what it can hold (``BOUNDS``)."""
    for column in required:
        if column in TEXT_COLUMNS or column.startswith("config/"):
            continue
        values = frame[column].dropna().astype(float)
        low, high = value_bounds(column)
        bad = values[~np.isfinite(values) | (values < low - 1e-9) | (values > high + 1e-9)]
        if not bad.empty:
            allowed = "a finite number" if math.isinf(low) else f"between {low:g} and {high:g}"
            shown = frame.loc[bad.index[0], column]
            shown = shown.item() if hasattr(shown, "item") else shown  # -1, not np.int64(-1)
            raise MixemError(f"{file} is corrupt: column {column} holds {shown!r} where {allowed} belongs; "
                             f"{RESTORE}.")


def _holds(kind: pa.DataType) -> str:
    """What a column of Arrow type ``kind`` holds, in the words of an error message."""
    if pa.types.is_dictionary(kind):  # a pandas categorical
        kind = kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "numbers"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "text"
    return "nothing" if pa.types.is_null(kind) else f"{kind} values"


def sweep_settings(folder: str | Path) -> dict:
    """A sweep folder's ``sweep.json``: ``{"kind": "sweep" or "ablation", "args": {flag: value}, ...}``."""
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        raise MixemError(f"{folder} holds no {SETTINGS_FILE}; {_FIX}.")
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MixemError(f"{path} cannot be read ({error}); {RESTORE}.") from None
    if not isinstance(settings, dict) or not isinstance(settings.get("args"), dict):
        raise MixemError(f"{path} is corrupt: it holds no args; {RESTORE}.")
    return settings


def sweep_metric(folder: str | Path) -> str:
    """The --metric a sweep folder was run with (its sweep.json), unchecked."""
    return sweep_settings(folder)["args"].get("metric")


def search_metrics(paths, metric: str | None, trials: pd.DataFrame) -> dict[str, str]:
    """The --metric each search among ``paths`` was run with, by its label in ``trials`` (``load_runs``), so that
    a SimCLR search is ranked by its own clustering and not by the first folder's; empty when ``metric`` is given
    (it ranks them all). A search folder without a sweep.json is left out (ranked by the report's metric);
    MixemError for a corrupt one, as ``resolve_metric``."""
    searches = set(trials.loc[trials["preset"] == "", "sweep"])
    if metric is not None:
        return {}
    return {label: resolve_metric([file.parent], None) for label, file in _resolve(paths, TRIALS_FILE)
            if label in searches and (file.parent / SETTINGS_FILE).is_file()}


def resolve_metric(paths, metric: str | None) -> str:
    """``metric``, or the --metric of the first sweep folder (its sweep.json); MixemError if it is
    not a score of an evaluation (a key of ``SCORE_KEYS``)."""
    keys = f"a key of mixem.scores.METRIC_KEYS or VALIDATION_KEYS, e.g. {FIXED_VARIANT}_acc or val_loss"
    if metric is None:
        first = Path(paths[0])
        folder = first if first.is_dir() else first.parent
        if not (folder / SETTINGS_FILE).is_file():
            raise MixemError(f"{folder} holds no {SETTINGS_FILE} to read the sweep's --metric from; pass --metric.")
        metric = sweep_metric(folder)
        if metric not in SCORE_KEYS:
            raise MixemError(f"{folder / SETTINGS_FILE} is corrupt: its --metric {metric!r} is not a score of an "
                             f"evaluation; pass --metric, {keys}.")
    if metric not in SCORE_KEYS:
        raise MixemError(f"--metric {metric} is not a score of an evaluation; pass {keys}.")
    return metric
