"""File writing shared by the trainer, the sweep and the report: whole files only, and one writer per folder."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mixem.errors import MixemError

# A run folder's layout (mixem.run_folder writes it; tune/ reads the history inside checkpoints too).
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_FOLDER = "checkpoint"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.jsonl"  # one JSON line per epoch, in the run folder and in every checkpoint
# What makes a folder a run's: a new run refuses a folder holding any of them.
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, METRICS_FILE, CHECKPOINT_FOLDER)
# A sweep's folder (tune/results.py writes it): its settings, which mark it as a sweep's, and its results.
SETTINGS_FILE = "sweep.json"
TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
BASELINES_FILE = "baselines.parquet"  # the no-learning baselines of the sweep's dataset, written when it starts
SWEEP_RESULTS = (TRIALS_FILE, EPOCHS_FILE, BASELINES_FILE)
LOCK_FILE = ".lock"


def results_in(folder: Path, names: tuple[str, ...] = RUN_FILES + SWEEP_RESULTS) -> list[str]:
    """The ``names`` that ``folder`` holds: results a command must neither adopt nor overwrite."""
    return [name for name in names if (Path(folder) / name).exists()]


def write_atomic(path: Path, content: str | Callable[[Path], None]) -> None:
    """Write ``content`` (text, or a function that writes a given path) to a temporary file beside
    ``path``, then rename it over ``path``: readers, and a crash at any moment, only ever see the
    old or the new whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if isinstance(content, str):
            tmp.write_text(content)
        else:
            content(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a write that failed half way leaves no stray file


class FolderLock:
    """An exclusive lock on ``folder`` for the holder's lifetime: a second writer (a second sweep driver,
    a second run on the same --out) is refused, in one sentence naming ``what`` holds it and the ``fix``.
    The operating system drops the lock when the process dies, however it dies."""

    def __init__(self, folder: Path, what: str, fix: str):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.file = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 (held open until release)
        except OSError as error:
            raise MixemError(f"Cannot write to {folder} ({error.strerror or error}); pass a folder you can write "
                             "to.") from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            owner = self.file.read().strip() or "another process"
            self.file.close()
            raise MixemError(f"Another {what} ({owner}) is writing to {folder}; {fix}") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {os.uname().nodename}")
        self.file.flush()

    def release(self) -> None:
        self.file.close()


@contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A new folder ``<temp>/<prefix>XXXX`` held by a ``FolderLock`` for the caller's lifetime and removed on
    exit. A process killed while holding one (a trial ASHA stopped, the OOM killer) cannot remove it, so each
    new one first removes the folders of ``prefix`` whose lock no living process holds."""
    root = Path(tempfile.gettempdir())
    remove_dead_scratch_folders(root, prefix)
    # Made under another name and renamed once locked: a cleaner never sees a live folder without its lock.
    starting = Path(tempfile.mkdtemp(prefix=f".starting-{prefix}", dir=root))
    lock = FolderLock(starting, "process", "it is in use.")
    folder = root / f"{prefix}{starting.name.removeprefix(f'.starting-{prefix}')}"
    starting.rename(folder)
    try:
        yield folder
    finally:
        lock.release()
        shutil.rmtree(folder, ignore_errors=True)


def remove_dead_scratch_folders(root: Path, prefix: str) -> list[Path]:
    """Remove the folders ``root/<prefix>*`` whose lock file no process holds (their owner died); return them."""
    removed = []
    for folder in sorted(root.glob(f"{prefix}*")):
        try:
            with open(folder / LOCK_FILE, "r+") as handle:  # no lock file: not a scratch folder, left alone
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)  # under the lock: no other cleaner races it
                removed.append(folder)
        except OSError:  # held by a living process (BlockingIOError), or not ours to read
            continue
    return removed
