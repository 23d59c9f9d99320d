"""File writing shared by the trainer, the sweep and the report."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

# A run folder's layout (mixem.train writes it; tune/ reads the history inside checkpoints too).
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.jsonl"  # one JSON line per epoch, in the run folder and in every checkpoint


def write_atomic(path: Path, content: str | Callable[[Path], None]) -> None:
    """Write ``content`` (text, or a function that writes a given path) to a temporary file beside
    ``path``, then rename it over ``path``: readers, and a crash at any moment, only ever see the
    old or the new whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if isinstance(content, str):
        tmp.write_text(content)
    else:
        content(tmp)
    os.replace(tmp, path)
