"""A sweep's results: two Parquet files, their schema, and a copy in the sweep's storage.

``OUT/epochs.parquet`` has one row per (trial, epoch), added as each epoch is reported;
``OUT/trials.parquet`` one row per trial that ended (finished, stopped early or errored). The
columns are ``trials_schema()`` and ``epochs_schema()`` (the README lists them). The rules that
make a sweep trustworthy after any crash live here:

- a trial's row in ``trials.parquet`` is written once and never replaced, and an ended trial's
  epoch rows never change;
- an epoch reported twice (a worker retried from an earlier checkpoint) keeps one row, the latest;
- epochs the driver never saw (it died after a checkpoint was saved, before the report reached it)
  are recovered from the ``history.jsonl`` the trainer writes into every checkpoint;
- every file is written to a temporary name and renamed over the old one, so a reader, or a
  driver killed at any moment, sees a whole file; each write is copied to ``--storage`` too, so a
  sweep resumes on a new machine from the storage alone.

Nothing here imports Ray or torch: ``tune/recording.py`` feeds this module from a Tune callback.
"""

from __future__ import annotations

import json
import math
import time
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mixem.config import FIELDS
from mixem.errors import MixemError
from mixem.files import BASELINES_FILE, EPOCHS_FILE, HISTORY_FILE, SETTINGS_FILE, TRIALS_FILE, write_atomic
from mixem.scores import LOSS_TERMS, ORACLE_METRIC, SCORE_KEYS, metric_mode

__all__ = ["BASELINES_FILE", "EPOCHS_FILE", "SETTINGS_FILE", "TRIALS_FILE"]  # names of mixem.files, used here
# The files --resume needs, copied to this folder of the sweep's storage.
STORAGE_FOLDER = "mixem"
# epochs.parquet grows every epoch: its copy in storage is refreshed at most this often (and when a trial ends).
MIRROR_EPOCHS_EVERY_S = 30.0
STATUSES = ("finished", "early_stopped", "errored")
EPOCH_VALUES = [f"loss_{term}" for term in LOSS_TERMS] + ["lr", "train_images", "world_size", "epoch_seconds",
                                                           "eval_seconds", "trial_seconds"]
_ARROW_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
NAN = float("nan")
# The version of both files' columns, in each file's schema metadata. 2: the device column.
SCHEMA_VERSION = 2
SCHEMA_VERSION_KEY = b"mixem.schema_version"


def trials_schema() -> pa.Schema:
    """One row per trial: identity, status, the whole flat config, final and best scores, cost."""
    columns = [("trial_id", pa.string()), ("preset", pa.string()), ("dataset", pa.string()),
               ("status", pa.string()), ("error", pa.string()), ("device", pa.string())]
    columns += [(f"config/{name}", _ARROW_TYPES[type(field.default)]) for name, field in FIELDS.items()]
    columns += [(f"final/{key}", pa.float64()) for key in SCORE_KEYS]
    columns += [(f"best/{key}", pa.float64()) for key in SCORE_KEYS]
    columns += [("epochs", pa.int64()), ("wall_seconds", pa.float64()), ("gpu_seconds", pa.float64()),
                ("cpu_seconds", pa.float64())]
    return _versioned(columns)


def epochs_schema() -> pa.Schema:
    """One row per (trial, epoch): the device it trained on, loss terms, lr, images, times, and every
    score (NaN when not evaluated)."""
    columns = [("trial_id", pa.string()), ("preset", pa.string()), ("epoch", pa.int64()), ("device", pa.string())]
    columns += [(name, pa.float64()) for name in EPOCH_VALUES]
    columns += [(key, pa.float64()) for key in SCORE_KEYS]
    return _versioned(columns)


def baselines_schema() -> pa.Schema:
    """One row per baseline and seed: K-means on the evaluation pixels (``mixem.baselines``)."""
    columns = [("dataset", pa.string()), ("eval_split", pa.string()), ("baseline", pa.string()),
               ("seed", pa.int64()), ("n_init", pa.int64()), ("max_iter", pa.int64()),
               ("acc", pa.float64()), ("nmi", pa.float64()), ("ari", pa.float64())]
    return _versioned(columns)


def write_baselines(folder: Path, rows: list[dict], mirror: Storage | None) -> None:
    """Write ``folder``'s baselines.parquet (whole, atomically), and its copy in storage."""
    path = folder / BASELINES_FILE
    write_atomic(path, partial(pq.write_table, pa.Table.from_pylist(rows, schema=baselines_schema())))
    if mirror is not None:
        mirror.upload(path)


def _versioned(columns: list) -> pa.Schema:
    return pa.schema(columns, metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()})


def epoch_row(trial_id: str, preset: str, metrics: dict, trial_seconds: float) -> dict:
    """The epochs.parquet row of one epoch as ``mixem.train.train`` reports it (or wrote it to its
    history); ``trial_seconds`` is the trial's wall time when it was reported (NaN if unknown)."""
    evaluated = bool(metrics.get("evaluated", False))
    row = {"trial_id": trial_id, "preset": preset, "epoch": int(metrics["epoch"]),
           "device": str(metrics.get("device", ""))}  # "" in a history written before devices were recorded
    row.update({name: float(metrics.get(name, NAN)) for name in EPOCH_VALUES})
    row["trial_seconds"] = float(trial_seconds)
    # Only an evaluated epoch carries scores: the sweep carries the searched metric forward for
    # Tune between evaluations, and that copy must not pass for a measurement.
    row.update({key: float(metrics.get(key, NAN)) if evaluated else NAN for key in SCORE_KEYS})
    return row


def trial_row(trial_id: str, preset: str, config: dict, epochs: list[dict], *, metric: str, status: str,
              error: str, wall_seconds: float, cpus: float, gpus: float) -> dict:
    """The trials.parquet row of a trial that ended: ``config`` is its flat config, ``epochs`` its
    epoch rows, ``metric`` the sweep's; ``cpus`` and ``gpus`` are what its Train workers held.
    ``device`` lists the devices its epochs trained on (in order of first use, "; "-joined), and GPU
    time counts only the share of its epochs that trained on a GPU."""
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
    devices = list(dict.fromkeys(row["device"] for row in epochs if row["device"]))
    on_gpu = sum(row["device"].startswith("cuda") for row in epochs) / len(epochs) if epochs else 0.0
    row = {"trial_id": trial_id, "preset": preset, "dataset": config["dataset"], "status": status, "error": error,
           "device": "; ".join(devices)}
    row.update({f"config/{name}": config[name] for name in FIELDS})
    row.update({f"final/{key}": final.get(key, NAN) for key in SCORE_KEYS})
    row.update({f"best/{key}": best.get(key, NAN) for key in SCORE_KEYS})
    row.update(epochs=epochs[-1]["epoch"] if epochs else 0, wall_seconds=wall_seconds,
               gpu_seconds=wall_seconds * gpus * on_gpu, cpu_seconds=wall_seconds * cpus)
    return row


def read_parquet(path: Path, schema: pa.Schema) -> list[dict]:
    """The rows of a results file written by this module; MixemError if it is unreadable or foreign."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise MixemError(f"{path} is corrupt ({error}); move it away and rerun without --resume.") from None
    version = (table.schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if version is not None and version != str(SCHEMA_VERSION).encode():
        raise MixemError(f"{path} holds results schema version {version.decode(errors='replace')} and this version "
                         f"of mixem writes {SCHEMA_VERSION}; resume it with the version that wrote it, or pass "
                         "another --output.")
    # A file without the version (one that pandas rewrote) is ours if its columns are.
    conformed = _conform(table, schema)
    if conformed is None:
        raise MixemError(f"{path} does not have the columns this version writes; resume it with the version that "
                         "wrote it, or pass another --output.")
    return conformed.to_pylist()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """``table`` with ``schema``'s types, when it has the same columns in the same order and each holds the
    same kind of values (pandas writes text as large_string); else None."""
    if table.schema.names != schema.names:
        return None
    for have, want in zip(table.schema.types, schema.types, strict=True):
        if have != want and not (_is_text(have) and _is_text(want)):
            return None
    table = table.cast(schema)
    # pandas writes NaN as null: read it back as the NaN this module writes.
    for index, field in enumerate(schema):
        if pa.types.is_floating(field.type) and table.column(index).null_count:
            table = table.set_column(index, field, pc.fill_null(table.column(index), NAN))
    return table


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


class Storage:
    """A folder of the sweep's storage (a local path or a URI such as s3://BUCKET/PREFIX) through pyarrow."""

    def __init__(self, uri: str):
        self.uri = uri
        try:
            self.fs, self.path = pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)
        except (pa.ArrowException, OSError, ValueError) as error:
            raise MixemError(f"Cannot open the storage {uri} ({error}); check --storage.") from None

    def child(self, *parts: str) -> Storage:
        return Storage("/".join([self.uri.rstrip("/"), *parts]))

    def upload(self, local: Path) -> None:
        try:
            self.fs.create_dir(self.path, recursive=True)
            pafs.copy_files(str(local), f"{self.path}/{local.name}", destination_filesystem=self.fs)
        except (pa.ArrowException, OSError) as error:  # a file where a folder should be, no permission, no bucket
            raise MixemError(f"Cannot write {local.name} to the storage {self.uri} ({error}); check --storage and "
                             "that this machine may write there.") from None

    def check_writable(self) -> None:
        """Write and delete a probe file here: a storage that cannot take the sweep's files is refused
        before the sweep writes anything."""
        probe = f"{self.path}/.mixem-write-check"
        try:
            self.fs.create_dir(self.path, recursive=True)
            with self.fs.open_output_stream(probe) as stream:
                stream.write(b"ok")
            self.fs.delete_file(probe)
        except (pa.ArrowException, OSError) as error:
            raise MixemError(f"Cannot write to the storage {self.uri} ({error}); check --storage and that this "
                             "machine may write there.") from None

    def download(self, name: str, local: Path) -> bool:
        """Copy ``name`` into the local folder ``local``; False when storage has no such file."""
        if self.fs.get_file_info(f"{self.path}/{name}").type != pafs.FileType.File:
            return False
        local.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(f"{self.path}/{name}", str(local / name), source_filesystem=self.fs)
        return True

    def read_text(self, path: str) -> str | None:
        """The text of ``path`` (relative to this folder), or None if there is no such file."""
        full = f"{self.path}/{path}"
        if self.fs.get_file_info(full).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(full) as stream:
            return stream.read().decode()

    def folders(self) -> list[str]:
        """Names of the folders right under this one (none if it does not exist)."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return [info.base_name for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.Directory]


def checkpoint_history(train_run: Storage) -> list[dict]:
    """The epochs a trial's Train run saved in its latest checkpoint (the one with the most epochs)."""
    histories = []
    for folder in train_run.folders():
        if folder.startswith("checkpoint"):
            text = train_run.read_text(f"{folder}/{HISTORY_FILE}")
            if text:
                histories.append([json.loads(line) for line in text.splitlines() if line.strip()])
    return max(histories, key=len, default=[])


class ResultFiles:
    """The results folder of one sweep, ranked by ``metric``, mirrored to ``mirror`` when given."""

    clock = staticmethod(time.monotonic)  # tests replace it

    def __init__(self, folder: str | Path, metric: str, mirror: Storage | None = None):
        self.folder, self.metric, self.mirror = Path(folder), metric, mirror
        self.trials: dict[str, dict] = {}
        self.epochs: dict[tuple[str, int], dict] = {}
        self._mirrored_epochs_at = -math.inf

    @classmethod
    def open(cls, folder: str | Path, metric: str, mirror: Storage | None = None) -> ResultFiles:
        """Load what an earlier run of this sweep wrote to ``folder`` (nothing if it is new)."""
        files = cls(folder, metric, mirror)
        if (files.folder / TRIALS_FILE).exists():
            files.trials = {row["trial_id"]: row for row in read_parquet(files.folder / TRIALS_FILE, trials_schema())}
        if (files.folder / EPOCHS_FILE).exists():
            rows = read_parquet(files.folder / EPOCHS_FILE, epochs_schema())
            files.epochs = {(row["trial_id"], row["epoch"]): row for row in rows}
        return files

    def ended(self, trial_id: str) -> bool:
        return trial_id in self.trials

    def epochs_of(self, trial_id: str) -> list[dict]:
        return sorted((row for (tid, _), row in self.epochs.items() if tid == trial_id), key=lambda r: r["epoch"])

    def seconds_before(self, trial_id: str) -> float:
        """Wall time a trial ran before this driver started (its latest recorded ``trial_seconds``)."""
        seconds = [row["trial_seconds"] for row in self.epochs_of(trial_id) if not math.isnan(row["trial_seconds"])]
        return max(seconds, default=0.0)

    def add_epochs(self, rows: list[dict], *, replace: bool = True) -> None:
        """Record epoch rows of a running trial and write the file: a repeated (trial, epoch) keeps the
        newest row with ``replace`` (a retried worker trained it again), the old one without (rows
        recovered from a checkpoint only fill gaps). Rows of ended trials never change."""
        changed = False
        for row in rows:
            key = (row["trial_id"], row["epoch"])
            if self.ended(row["trial_id"]) or (key in self.epochs and not replace):
                continue
            self.epochs[key] = row
            changed = True
        if changed:
            self._write(EPOCHS_FILE, sorted(self.epochs.values(), key=lambda r: (r["trial_id"], r["epoch"])),
                        epochs_schema(), mirror=self.clock() - self._mirrored_epochs_at > MIRROR_EPOCHS_EVERY_S)

    def finish(self, row: dict) -> bool:
        """Write an ended trial's row, once: False (and nothing written) if it already has one."""
        if self.ended(row["trial_id"]):
            return False
        self.trials[row["trial_id"]] = row
        self.flush()  # the trial's epochs first: a copy in storage never has a trial without its epochs
        self._write(TRIALS_FILE, list(self.trials.values()), trials_schema())
        return True

    def flush(self) -> None:
        """Bring the storage's copy of epochs.parquet up to date."""
        if self.mirror is not None and (self.folder / EPOCHS_FILE).exists():
            self.mirror.upload(self.folder / EPOCHS_FILE)
            self._mirrored_epochs_at = self.clock()

    def write_empty(self) -> None:
        """Create both files (no rows), so readers find the schema before any trial ends."""
        for name, schema in ((EPOCHS_FILE, epochs_schema()), (TRIALS_FILE, trials_schema())):
            if not (self.folder / name).exists():
                self._write(name, [], schema)

    def _write(self, name: str, rows: list[dict], schema: pa.Schema, mirror: bool = True) -> None:
        path = self.folder / name
        write_atomic(path, partial(pq.write_table, pa.Table.from_pylist(rows, schema=schema)))
        if mirror and self.mirror is not None:
            self.mirror.upload(path)
            if name == EPOCHS_FILE:
                self._mirrored_epochs_at = self.clock()
