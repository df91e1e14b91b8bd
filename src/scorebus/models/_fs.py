"""Atomic file writes and inter-process locks for the on-disk model registry.

Several processes (workers, the CLI, a training job) read the registry while
another writes it, so every file is written to a temporary sibling and moved
into place with ``os.replace``: a reader sees the old bytes or the new ones,
never half a file. Read-modify-write sequences (aliases, version numbers,
the demo model) additionally hold an advisory ``fcntl`` lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl
    fcntl = None  # type: ignore[assignment]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers never observe a partial file.

    Args:
        path: Destination; its parent directory must exist.
        data: The complete new content.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            # fsync before the rename: otherwise a crash can leave the new name
            # pointing at an empty file on some filesystems.
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_copy(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` via a temporary sibling and ``os.replace``.

    Args:
        source: File to copy.
        dest: Destination path; its parent directory must exist.
    """
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing).

    The lock is per open file description, so it excludes other processes and
    other threads of this process alike. It is not re-entrant: do not take the
    same lock twice in one call chain.

    Args:
        path: The lock file.

    Yields:
        Nothing; the lock is held for the duration of the ``with`` block.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
