"""Sweep results as two Parquet files, rewritten atomically as trials finish.

``OUT/trials.parquet`` has one row per finished trial, ``OUT/epochs.parquet`` one row per
(trial, epoch); the columns are ``trials_schema()`` and ``epochs_schema()`` (the README lists
them). Each file is written to a temporary name, then renamed over the old one, so a reader or
a driver killed at any moment sees either the old or the new whole file, and every finished
trial survives. The epochs of trials still running are kept in ``OUT/.running.json`` (also
replaced atomically) so that ``--resume`` can finish their rows.

Nothing here imports Ray: ``tune/sweep.py`` feeds this module from a Tune callback.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mixem.config import FIELDS
from mixem.errors import MixemError
from mixem.files import write_atomic
from mixem.scores import LOSS_TERMS, METRIC_KEYS, ORACLE_METRIC, VALIDATION_KEYS, metric_mode

TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
RUNNING_FILE = ".running.json"
STATUSES = ("finished", "early_stopped", "errored")
EPOCH_VALUES = [f"loss_{term}" for term in LOSS_TERMS] + ["lr", "train_images", "world_size", "epoch_seconds",
                                                           "eval_seconds"]
# Every score of an evaluation: clustering metrics (label-free silhouettes among them) and the validation loss.
SCORES = METRIC_KEYS + VALIDATION_KEYS
_ARROW_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
NAN = float("nan")


def trials_schema() -> pa.Schema:
    """One row per trial: identity, status, the whole flat config, final and best metrics, cost."""
    columns = [("trial_id", pa.string()), ("preset", pa.string()), ("dataset", pa.string()),
               ("status", pa.string()), ("error", pa.string())]
    columns += [(f"config/{name}", _ARROW_TYPES[type(field.default)]) for name, field in FIELDS.items()]
    columns += [(f"final/{key}", pa.float64()) for key in SCORES]
    columns += [(f"best/{key}", pa.float64()) for key in SCORES]
    columns += [("epochs", pa.int64()), ("wall_seconds", pa.float64()), ("gpu_seconds", pa.float64()),
                ("cpu_seconds", pa.float64())]
    return pa.schema(columns)


def epochs_schema() -> pa.Schema:
    """One row per (trial, epoch): loss terms, lr, times, and every metric (NaN when not evaluated)."""
    columns = [("trial_id", pa.string()), ("preset", pa.string()), ("epoch", pa.int64())]
    columns += [(name, pa.float64()) for name in EPOCH_VALUES]
    columns += [(key, pa.float64()) for key in SCORES]
    return pa.schema(columns)


def epoch_row(trial_id: str, preset: str, metrics: dict) -> dict:
    """The epochs.parquet row of one reported epoch (``mixem.train.train``'s per-epoch metrics)."""
    evaluated = bool(metrics.get("evaluated", False))
    row = {"trial_id": trial_id, "preset": preset, "epoch": int(metrics["epoch"])}
    row.update({name: float(metrics.get(name, NAN)) for name in EPOCH_VALUES})
    # Only an evaluated epoch carries metrics: the sweep carries the searched metric forward for
    # Tune between evaluations, and that copy must not pass for a measurement.
    row.update({key: float(metrics.get(key, NAN)) if evaluated else NAN for key in SCORES})
    return row


def trial_row(trial_id: str, preset: str, config: dict, epochs: list[dict], *, metric: str, status: str,
              error: str = "", wall_seconds: float, cpus: float, gpus: float) -> dict:
    """The trials.parquet row of a trial that ended: ``config`` is its flat config, ``epochs`` its
    epoch rows, ``metric`` the sweep's; ``cpus`` and ``gpus`` are what it held while running (its
    Train workers')."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    epochs = sorted(epochs, key=lambda row: row["epoch"])
    evaluated = [row for row in epochs if not math.isnan(row[ORACLE_METRIC])]  # every evaluation has it
    final = evaluated[-1] if evaluated else {}
    # "best": every score read at the one epoch where the sweep's metric peaked (the first, on a tie);
    # none where the trial never had the metric (the SimCLR head has no component init).
    scored = [row for row in evaluated if not math.isnan(row[metric])]
    sign = 1 if metric_mode(metric) == "max" else -1
    best = max(scored, key=lambda row: sign * row[metric]) if scored else {}
    row = {"trial_id": trial_id, "preset": preset, "dataset": config["dataset"], "status": status, "error": error}
    row.update({f"config/{name}": config[name] for name in FIELDS})
    row.update({f"final/{key}": final.get(key, NAN) for key in SCORES})
    row.update({f"best/{key}": best.get(key, NAN) for key in SCORES})
    row.update(epochs=epochs[-1]["epoch"] if epochs else 0, wall_seconds=wall_seconds,
               gpu_seconds=wall_seconds * gpus, cpu_seconds=wall_seconds * cpus)
    return row


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    """Write ``rows`` to ``path`` atomically: a temporary file in the same folder, then a rename."""
    write_atomic(path, partial(pq.write_table, pa.Table.from_pylist(rows, schema=schema)))


def read_parquet(path: Path, schema: pa.Schema) -> list[dict]:
    """The rows of a results file written by this module; MixemError if it is unreadable or foreign."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise MixemError(f"{path} is corrupt ({error}); move it away and rerun without --resume.") from None
    if table.schema.remove_metadata() != schema:
        raise MixemError(
            f"{path} does not have the columns this version writes; resume it with the version that wrote it, "
            "or pass another --output."
        )
    return table.to_pylist()


class ResultStore:
    """The results folder of one sweep: finished trials in Parquet, running trials' epochs in JSON."""

    def __init__(self, folder: str | Path, metric: str):
        self.folder, self.metric = Path(folder), metric
        self.trials: list[dict] = []
        self.epochs: list[dict] = []
        self.running: dict[str, dict] = {}  # trial_id -> {"preset", "wall_seconds", "epochs": {epoch: row}}
        self.resumed_wall: dict[str, float] = {}  # wall time each running trial had when this store was opened

    @classmethod
    def open(cls, folder: str | Path, metric: str) -> ResultStore:
        """Load what an earlier run of this sweep (ranking by ``metric``) wrote to ``folder`` (nothing if new)."""
        store = cls(folder, metric)
        if (store.folder / TRIALS_FILE).exists():
            store.trials = read_parquet(store.folder / TRIALS_FILE, trials_schema())
        if (store.folder / EPOCHS_FILE).exists():
            store.epochs = read_parquet(store.folder / EPOCHS_FILE, epochs_schema())
        running_file = store.folder / RUNNING_FILE
        if running_file.exists():
            try:
                running = json.loads(running_file.read_text())
                store.running = {trial_id: {**entry, "epochs": {int(e): row for e, row in entry["epochs"].items()}}
                                 for trial_id, entry in running.items()}
            except (json.JSONDecodeError, KeyError, AttributeError, ValueError) as error:
                raise MixemError(f"{running_file} is corrupt ({error}); delete it to resume without the "
                                 "epochs of the trials that were running.") from None
        store.resumed_wall = {trial_id: entry["wall_seconds"] for trial_id, entry in store.running.items()}
        return store

    @property
    def finished_ids(self) -> set[str]:
        return {row["trial_id"] for row in self.trials}

    def wall_seconds_before(self, trial_id: str) -> float:
        """Wall time a trial ran before this store was opened (a resumed trial continues the count)."""
        return self.resumed_wall.get(trial_id, 0.0)

    def add_epoch(self, trial_id: str, preset: str, metrics: dict, wall_seconds: float) -> None:
        """Record a running trial's epoch and its wall time so far (``wall_seconds``, kept for a
        resume); a retried trial that repeats an epoch replaces it."""
        entry = self.running.setdefault(trial_id, {"preset": preset, "wall_seconds": 0.0, "epochs": {}})
        row = epoch_row(trial_id, preset, metrics)
        entry["epochs"][row["epoch"]] = row
        entry["wall_seconds"] = wall_seconds
        self._write_running()

    def finish(self, trial_id: str, preset: str, config: dict, *, status: str, error: str = "",
               wall_seconds: float, cpus: float, gpus: float) -> dict:
        """Move a trial that ended into both Parquet files (rewritten atomically) and return its row."""
        epochs = list(self.running.get(trial_id, {}).get("epochs", {}).values())
        row = trial_row(trial_id, preset, config, epochs, metric=self.metric, status=status, error=error,
                        wall_seconds=wall_seconds, cpus=cpus, gpus=gpus)
        self.folder.mkdir(parents=True, exist_ok=True)
        # Epochs first: a driver killed between the two writes leaves the trial running (in
        # .running.json) and its rows are replaced, not duplicated, when it finishes again.
        self.epochs = [r for r in self.epochs if r["trial_id"] != trial_id] + sorted(epochs, key=lambda r: r["epoch"])
        write_parquet(self.folder / EPOCHS_FILE, self.epochs, epochs_schema())
        self.trials = [r for r in self.trials if r["trial_id"] != trial_id] + [row]
        write_parquet(self.folder / TRIALS_FILE, self.trials, trials_schema())
        self.running.pop(trial_id, None)
        self._write_running()
        return row

    def write_empty(self) -> None:
        """Create both Parquet files with no rows, so readers find the schema before any trial ends."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, schema in ((EPOCHS_FILE, epochs_schema()), (TRIALS_FILE, trials_schema())):
            if not (self.folder / name).exists():
                write_parquet(self.folder / name, [], schema)

    def _write_running(self) -> None:
        # NaN is written as NaN, which json.loads reads back.
        write_atomic(self.folder / RUNNING_FILE, json.dumps(self.running))
