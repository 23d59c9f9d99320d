"""Environment variables a test module's Ray sets or needs changed, put back as they were afterwards."""

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def kept_environ(*names: str) -> Iterator[None]:
    """Run the body, then give each of ``names`` its value from before, or remove it if it had none: Ray
    itself sets some (``RAY_AUTH_MODE``), which pytest's monkeypatch would not know to undo."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
