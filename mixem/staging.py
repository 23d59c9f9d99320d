"""Datasets kept in object storage (``s3://BUCKET/PREFIX``, ``gs://...``), copied to each node's disk once.

On a cluster, every node that trains needs the dataset's files. Downloading them from their original
hosts on every new node is slow (STL10 is 2.6 GB) and fragile; instead the files are uploaded once to
the cluster's bucket, in the same layout as a local ``--data-dir`` (``PREFIX/cifar-10-batches-py/...``),
and ``--data-dir s3://BUCKET/PREFIX`` makes each node copy a dataset's folder to local disk the first
time a run on that node needs it. The copy happens under a file lock, so the trials that start together
on a node wait for one copy instead of making one each, and it lands under its final name only when
whole, so a copy cut short is redone rather than read.

Any URI that pyarrow's file systems open works (``s3://``, ``gs://``, ``hdfs://``, ``file://``); the
node-local copies live under ``$MIXEM_STAGE_DIR``, else ``~/.cache/mixem/datasets``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from pathlib import Path

from mixem.config import DATASETS
from mixem.errors import DataNotFoundError, MixemError

STAGE_DIR_ENV = "MIXEM_STAGE_DIR"
STAGED_MARK = ".staged"


def is_uri(data_dir) -> bool:
    """Whether ``data_dir`` names object storage rather than a local folder."""
    return data_dir is not None and "://" in str(data_dir)


def stage_root() -> Path:
    return Path(os.environ.get(STAGE_DIR_ENV) or Path.home() / ".cache" / "mixem" / "datasets")


def stage_dataset(uri: str, dataset: str, root: Path | None = None) -> Path:
    """A local folder that holds ``dataset`` as ``uri`` does (use it as the data dir): the copy made
    earlier on this node, or a new one. Raises DataNotFoundError when ``uri`` has no files of it."""
    folder = DATASETS[dataset].folder
    local = (root or stage_root()) / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    if folder is None:  # digits ships with scikit-learn: nothing to copy
        return local
    mark = local / f"{STAGED_MARK}-{dataset}"
    if mark.is_file():
        return local
    try:
        local.mkdir(parents=True, exist_ok=True)
        with open(local / f".lock-{dataset}", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when this process dies
            if not mark.is_file():  # another process may have copied it while this one waited
                _copy(uri, folder, local)
                (local / "source.txt").write_text(uri + "\n")
                mark.touch()
    except OSError as error:
        raise MixemError(f"Cannot copy {dataset} to this node's disk under {local} ({error.strerror or error}); "
                         f"set {STAGE_DIR_ENV} to a writable folder with room for it.") from None
    return local


def _copy(uri: str, folder: str, local: Path) -> None:
    """Copy ``uri/folder`` to ``local/folder`` through a temporary folder renamed into place when whole."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    source = f"{uri.rstrip('/')}/{folder}"
    try:
        filesystem, path = pafs.FileSystem.from_uri(source)
        files = [info for info in filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True,
                                                                             recursive=True))
                 if info.type == pafs.FileType.File]
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataNotFoundError(f"Cannot list {source} ({error}); check --data-dir and this node's access to "
                                "it.") from None
    if not files:
        raise DataNotFoundError(f"{source} holds no files; upload the dataset there once (e.g. aws s3 sync "
                                f"data/{folder} {source}), or pass --data-dir a folder that holds it.")
    target = local / folder
    for stale in local.glob(".partial-*"):  # left by a process that died copying (this one holds the lock)
        shutil.rmtree(stale, ignore_errors=True)
    partial = local / f".partial-{os.getpid()}"
    size = sum(info.size for info in files)
    print(f"staging {source} ({size / 2**20:.0f} MiB) to {target}", file=sys.stderr, flush=True)
    try:
        partial.mkdir()
        pafs.copy_files(path, str(partial), source_filesystem=filesystem,
                        destination_filesystem=pafs.LocalFileSystem(), use_threads=True)
    except (pa.ArrowException, OSError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataNotFoundError(f"Copying {source} to this node failed ({error}); check the node's access to it "
                                "and its free disk.") from None
    copied = sum(p.stat().st_size for p in partial.rglob("*") if p.is_file())
    if copied != size:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataNotFoundError(f"Copying {source} to this node gave {copied} of {size} bytes; run it again.")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)  # a copy made without the mark, by a process that died
    os.replace(partial, target)
