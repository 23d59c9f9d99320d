"""Scratch folders (mixem.files.scratch_folder): a trial's run folder is removed when the trial ends, and when
it is killed (ASHA's stop, the OOM killer) by the next one, never while its owner lives."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mixem.files import LOCK_FILE, remove_dead_scratch_folders, scratch_folder

HOLD = """
import sys, time
from mixem.files import scratch_folder
with scratch_folder("mixem-trial-") as folder:
    (folder / "run").mkdir()
    (folder / "run" / "checkpoint.pt").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    time.sleep(600)
"""


@pytest.fixture
def scratch_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp_path


def _holder(root: Path) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(root)}, cwd=Path(__file__).resolve().parents[1])
    return process, Path(process.stdout.readline().strip())


def test_a_scratch_folder_is_removed_on_exit_and_error(scratch_root):
    with scratch_folder("mixem-trial-") as folder:
        assert folder.parent == scratch_root and folder.name.startswith("mixem-trial-") and folder.is_dir()
        assert (folder / LOCK_FILE).is_file()
    assert not folder.exists()
    with pytest.raises(RuntimeError), scratch_folder("mixem-trial-") as folder:
        raise RuntimeError("a failed trial")
    assert list(scratch_root.iterdir()) == []


def test_a_killed_owners_folder_goes_and_a_living_ones_stays(scratch_root):
    killed, dead_folder = _holder(scratch_root)
    living, live_folder = _holder(scratch_root)
    foreign = scratch_root / "mixem-trial-not-a-scratch-folder"  # no lock file: not ours to judge
    foreign.mkdir()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert (dead_folder / "run" / "checkpoint.pt").is_file()  # a killed process cannot clean up
        with scratch_folder("mixem-trial-") as folder:  # the next trial on the node cleans up first
            assert not dead_folder.exists()
            assert (live_folder / "run" / "checkpoint.pt").is_file() and foreign.is_dir() and folder.is_dir()
        assert remove_dead_scratch_folders(scratch_root, "mixem-trial-") == []
        assert sorted(scratch_root.iterdir()) == sorted([live_folder, foreign])
    finally:
        living.kill()
        living.wait(timeout=30)
    deadline = time.time() + 10
    while live_folder.exists() and time.time() < deadline:
        remove_dead_scratch_folders(scratch_root, "mixem-trial-")
        time.sleep(0.2)
    assert not live_folder.exists() and foreign.is_dir()
