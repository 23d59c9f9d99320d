"""A run's folder: what the trainer writes there, whole and in one place, and who may write it.

    RUN/config.json                 the run's flat config
    RUN/history.jsonl               one JSON line per epoch
    RUN/metrics.json                the last evaluation
    RUN/checkpoint/checkpoint.pt    model, optimizer, schedule, history: what --resume continues from
    RUN/checkpoint/history.jsonl    the history again, inside the checkpoint (a sweep recovers lost epochs from it)
    RUN/.lock                       held while a run writes here

A new run never writes into a folder that holds any of these (a finished run whose checkpoint was
deleted to save disk is still a run); a second run on the same folder is refused while the first
holds its lock. Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from mixem.config import Config
from mixem.errors import MixemError
from mixem.files import (
    CHECKPOINT_FILE,
    CHECKPOINT_FOLDER,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    RUN_FILES,
    SETTINGS_FILE,
    SWEEP_RESULTS,
    FolderLock,
    results_in,
    write_atomic,
)


class RunFolder:
    """The folder ``path`` of one run (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoint_dir = self.path / CHECKPOINT_FOLDER

    def run_files(self) -> list[str]:
        """The names of ``RUN_FILES`` the folder holds."""
        return results_in(self.path, RUN_FILES)

    def claim(self, *, resuming: bool) -> FolderLock:
        """Take the folder for this run: refuse a file, a folder holding another run (unless ``resuming`` it)
        and a folder another run is writing; the lock is held until released."""
        if self.path.exists() and not self.path.is_dir():
            raise MixemError(f"{self.path} is a file, not a run folder; pass --out a folder path.")
        foreign = results_in(self.path, (SETTINGS_FILE, *SWEEP_RESULTS))
        if foreign:
            raise MixemError(f"{self.path} holds a sweep's results ({', '.join(foreign)}), not a run; pass --out "
                             "another folder.")
        held = self.run_files()
        if held and not resuming:
            raise MixemError(f"{self.path} already holds a run ({', '.join(held)}); continue it with --resume "
                             f"{self.path} or choose another --out.")
        return FolderLock(self.path, "run", "wait for it to end, or pass another --out.")

    def write_config(self, config: Config) -> None:
        self._write(self.path / CONFIG_FILE, json.dumps(config.to_flat(), indent=2) + "\n")

    def save_epoch(self, state: dict, history: list[dict], evaluation: dict | None) -> Path:
        """The epoch's checkpoint (``state``), the history and, when the epoch was evaluated, the metrics;
        returns the checkpoint's folder."""
        lines = "".join(json.dumps(row) + "\n" for row in history)
        # The history goes into the checkpoint too: a sweep recovers from it epochs whose report was lost.
        self._write(self.checkpoint_dir / HISTORY_FILE, lines)
        self._write(self.checkpoint_dir / CHECKPOINT_FILE, partial(torch.save, state))
        self._write(self.path / HISTORY_FILE, lines)
        if evaluation is not None:
            self._write(self.path / METRICS_FILE, json.dumps(evaluation, indent=2) + "\n")
        return self.checkpoint_dir

    @staticmethod
    def _write(path: Path, content: str | Callable[[Path], None]) -> None:
        try:
            write_atomic(path, content)
        except OSError as error:  # a full disk, a folder made read-only under a running job
            raise MixemError(f"Cannot write {path} ({error.strerror or error}); free some space or pass --out a "
                             "folder you can write to.") from None


def checkpoint_path(resume_from: str | Path) -> Path:
    """The checkpoint.pt of a run folder, or of a folder that holds it directly (a sweep's checkpoint)."""
    resume_from = Path(resume_from)
    for candidate in (resume_from / CHECKPOINT_FILE, resume_from / CHECKPOINT_FOLDER / CHECKPOINT_FILE):
        if candidate.is_file():
            return candidate
    raise MixemError(f"No checkpoint to resume in {resume_from}; pass the run folder that `--out` wrote.")
