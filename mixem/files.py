"""File writing shared by the trainer, the sweep and the report: whole files only, and one writer per folder."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from mixem.errors import MixemError

# A run folder's layout (mixem.run_folder writes it; tune/ reads the history inside checkpoints too).
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.jsonl"  # one JSON line per epoch, in the run folder and in every checkpoint
LOCK_FILE = ".lock"


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
