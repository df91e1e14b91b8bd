"""In-flight accounting: one load figure, pause at 1.0, resume below 0.8.

Like python-pubsub's ``FlowControl``: the load is the larger of messages/cap
and bytes/cap, so either limit alone stops pulling.
"""

from __future__ import annotations

import asyncio

from .config import FlowControl


class FlowController:
    def __init__(self, config: FlowControl) -> None:
        self.config = config
        self.messages = 0
        self.bytes = 0
        self._resume = asyncio.Event()
        self._resume.set()

    @property
    def load(self) -> float:
        return max(self.messages / self.config.max_messages, self.bytes / self.config.max_bytes)

    def room(self) -> int:
        """How many more messages may be pulled now."""
        return max(0, self.config.max_messages - self.messages) if self._resume.is_set() else 0

    def acquire(self, messages: int, nbytes: int) -> None:
        self.messages += messages
        self.bytes += nbytes
        if self.load >= 1.0:
            self._resume.clear()

    def release(self, messages: int, nbytes: int) -> None:
        self.messages -= messages
        self.bytes -= nbytes
        if not self._resume.is_set() and self.load < 0.8:
            self._resume.set()

    async def wait(self) -> None:
        await self._resume.wait()
