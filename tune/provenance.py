"""What code and packages a sweep ran with, for its sweep.json: enough to rerun it or to tell two runs apart.

The git commit is known only where the sweep's folder is a git checkout (`ray job submit
--working-dir .` ships the files without .git); the SHA-256 of the project's sources always is,
so two runs on the same code have the same ``source_sha256`` wherever they ran.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("mixem", "tune", "analysis")
# The pinned packages whose versions change results or behaviour (pyproject.toml).
PACKAGES = ("ray", "torch", "torchvision", "optuna", "numpy", "scikit-learn", "scipy", "pandas", "pyarrow")


def provenance() -> dict:
    """``{"git_commit", "git_dirty", "source_sha256", "python", "packages"}``; git fields are None
    outside a git checkout."""
    commit, dirty = _git_state()
    return {"git_commit": commit, "git_dirty": dirty, "source_sha256": source_sha256(),
            "python": platform.python_version(), "packages": {name: _version(name) for name in PACKAGES}}


def source_sha256(root: Path = PROJECT_ROOT) -> str:
    """SHA-256 over the project's Python sources and pyproject.toml, by relative path, in path order."""
    digest = hashlib.sha256()
    files = sorted(path for folder in SOURCE_FOLDERS for path in (root / folder).rglob("*.py"))
    for path in [*files, root / "pyproject.toml"]:
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _git_state() -> tuple[str | None, bool | None]:
    if not (PROJECT_ROOT / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--", *SOURCE_FOLDERS,
                                  "pyproject.toml"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):  # no git on this machine, or not a work tree
        return None, None
    return commit, bool(changes.strip())


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
