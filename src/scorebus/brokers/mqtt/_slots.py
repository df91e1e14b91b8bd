"""Which MQTT sessions of a subscription this host has, and which are in use.

``slots/<digest>-<k>.slot`` in the ``state`` folder: one lock file per MQTT
session (client id ``sb-<digest>-<node>-<k>``) of a subscription. A process
holds the ``flock`` of its slot while its member is connected (the kernel
releases it when the process dies); a non-empty file means the session exists
at Mosquitto. An unlocked, non-empty slot is an orphan (a killed worker) or an
anchor (the last member that stopped), which a live member drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path


class Slot:
    """A held slot lock file (see the module docstring)."""

    def __init__(self, path: Path, fd: int, index: int) -> None:
        self.path, self.fd, self.index = path, fd, index

    @staticmethod
    def folder(state: Path) -> Path:
        path = state / "slots"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @classmethod
    def try_lock(cls, path: Path, index: int) -> Slot | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd, index)

    @classmethod
    def claim(cls, state: Path, digest: str) -> Slot:
        """The lowest slot that is free and has no session left to drain."""
        folder = cls.folder(state)
        index = 0
        while True:
            slot = cls.try_lock(folder / f"{digest}-{index}.slot", index)
            if slot is not None:
                if not slot.has_session:
                    return slot
                slot.release()
            index += 1

    @classmethod
    def idle(cls, state: Path, digest: str) -> list[Slot]:
        """Lock every unlocked slot of ``digest`` that still has a session (orphans, anchors)."""
        out = []
        for path in sorted(cls.folder(state).glob(f"{digest}-*.slot")):
            index = int(path.stem.rpartition("-")[2])
            slot = cls.try_lock(path, index)
            if slot is not None:
                if slot.has_session:
                    out.append(slot)
                else:
                    slot.release()
        return out

    @classmethod
    def others_in_use(cls, state: Path, digest: str, mine: int) -> bool:
        """Whether another slot of ``digest`` is locked (a live member on this host)."""
        for path in cls.folder(state).glob(f"{digest}-*.slot"):
            index = int(path.stem.rpartition("-")[2])
            if index == mine:
                continue
            slot = cls.try_lock(path, index)
            if slot is None:
                return True
            slot.release()
        return False

    @property
    def has_session(self) -> bool:
        return os.fstat(self.fd).st_size > 0

    def mark(self, has_session: bool) -> None:
        os.ftruncate(self.fd, 0)
        if has_session:
            os.pwrite(self.fd, b"1", 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextlib.asynccontextmanager
async def host_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive lock on ``path`` across this host's processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        await asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
