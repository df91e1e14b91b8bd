"""A subscription: one consumer group on a topic stream (and on its own replay stream).

``pull`` is one Lua script that hands out, in order, deliveries whose nack delay
or extension ran out, entries whose consumer let the ack deadline pass (a dead
or stalled worker's messages are taken over), replays, and new entries, as one
MessagePack reply. Only when that finds nothing does it wait, with a plain
XREAD BLOCK on both streams (which takes nothing), in slices short enough that
due retries and expired leases are not left behind a long block.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from redis import exceptions as rx

from ...errors import DecodeError
from ...events import Event, encode_data
from ...events.binding import from_headers, to_headers
from ..base import Delivery
from ._link import MAX_BLOCK_S, frame, is_nogroup

if TYPE_CHECKING:
    from .broker import RedisBroker

log = logging.getLogger(__name__)

Fields = dict[bytes, bytes]
Row = tuple[int, str, int, Fields]  # stream (1 topic, 2 replay), entry id, delivery count, fields
_rows = msgspec.msgpack.Decoder(list[tuple[int, bytes, int, list[bytes]]])

TIDY_EVERY_S = 5.0
MAX_PULL = 1000  # per script call: Redis runs nothing else while a script runs
REAP_IDLE_MS = 600_000  # consumers with nothing pending, silent this long, are removed


class RedisSubscription:
    """A consumer group named after the subscription; see the package docstring."""

    def __init__(self, broker: RedisBroker, topic: str, name: str, ack_deadline_s: float) -> None:
        self._broker = broker
        self._link = broker._link
        self.topic = topic
        self.name = name
        self.ack_deadline_s = ack_deadline_s
        keys = self._link.keys
        self._keys = [keys.topic(topic), keys.replay(name), keys.lease(name)]
        self._meta = keys.sub(name)
        self._dead_keys = [*self._keys, keys.dlq(name), keys.dlq_seq, keys.dlq_index]
        self._next_scan = 0.0
        self._next_tidy = time.monotonic() + TIDY_EVERY_S

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        give_up = time.monotonic() + max(0.0, timeout_s)
        recreated = False
        while max_messages > 0:
            try:
                rows, next_due_ms, last_ids = await self._claim(min(max_messages, MAX_PULL))
                out = await self._deliveries(rows)
                remaining = give_up - time.monotonic()
                if out or remaining <= 0:
                    return out
                wait = min(remaining, MAX_BLOCK_S, max(0.0, self._next_scan - time.monotonic()))
                if next_due_ms >= 0:
                    wait = min(wait, next_due_ms / 1000)
                if wait >= 0.001:
                    await self._wait(last_ids, wait)
            except rx.ResponseError as exc:
                if not is_nogroup(exc) or recreated:
                    raise
                # The group vanished: Redis restarted without persistence, or someone
                # deleted the stream. Recreate it and go on with whatever is there.
                log.warning("subscription %s: consumer group gone (%s); recreating", self.name, exc)
                await self._broker._create(self.topic, self.name, self.ack_deadline_s)
                recreated = True
        return []

    async def _claim(self, max_messages: int) -> tuple[list[Row], int, list[bytes]]:
        now = time.monotonic()
        scan = now >= self._next_scan
        if scan:
            self._next_scan = now + self.ack_deadline_s / 4
        if now >= self._next_tidy:
            self._next_tidy = now + TIDY_EVERY_S
            await self.tidy()
        args = [self.name, self._broker.consumer, max_messages, int(self.ack_deadline_s * 1000)]
        packed, next_due_ms, *last_ids = await self._link.script(
            "PULL", self._keys, [*args, int(scan)], f"pull on {self.name!r}"
        )
        rows = [
            (k, entry_id.decode(), count, dict(zip(flat[::2], flat[1::2], strict=True)))
            for k, entry_id, count, flat in _rows.decode(packed)
        ]
        return rows, int(next_due_ms), last_ids

    async def _wait(self, last_ids: list[bytes], wait_s: float) -> None:
        """Block until either stream grows past ``last_ids`` or ``wait_s`` passes.

        A plain XREAD, not XREADGROUP: it takes nothing, so whatever woke us is then
        claimed by the PULL script like everything else.
        """
        client, streams = self._link.client, dict(zip(self._keys[:2], last_ids, strict=True))
        await self._link.call(
            f"pull on {self.name!r}",
            lambda: client.xread(streams, count=1, block=max(1, int(wait_s * 1000))),
        )

    async def _deliveries(self, rows: list[Row]) -> list[Delivery]:
        out: list[Delivery] = []
        bad: list[tuple[Delivery, str, str, Fields]] = []
        deadline = time.time() + self.ack_deadline_s
        for k, entry_id, count, fields in rows:
            body = fields.get(b"data", b"")
            try:
                headers = {key.decode(): v.decode() for key, v in fields.items() if key != b"data"}
                event = from_headers(headers, body)
            except (UnicodeDecodeError, DecodeError) as exc:
                # Not a CloudEvent (a foreign producer's entry): dead-letter it now with
                # its raw fields rather than hand the runtime something it cannot key.
                raw_id = fields.get(b"ce-id", b"").decode(errors="replace") or f"redis:{entry_id}"
                placeholder = Event(id=raw_id, type="unknown", data=body)
                d = Delivery(
                    placeholder, attempt=count, handle=(k, entry_id, count), subscription=self
                )
                bad.append((d, DecodeError.reason, str(exc), fields))
                continue
            out.append(
                Delivery(
                    event,
                    attempt=count,
                    handle=(k, entry_id, count),
                    subscription=self,
                    size=len(body),
                    deadline=deadline,
                )
            )
        if bad:
            await self._dead_letter(bad)
        return out

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await self._settle("ACK", [*self._keys, self._meta], [self.name], deliveries, "ack")

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        if deliveries:
            ms = max(0, int(delay_s * 1000))
            await self._settle("LEASE", self._keys, [self.name, ms], deliveries, "nack")

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        if not deliveries:
            return
        ms = max(0, int(seconds * 1000))
        await self._settle("LEASE", self._keys, [self.name, ms], deliveries, "extend")
        deadline = time.time() + ms / 1000
        for d in deliveries:
            d.deadline = deadline

    async def _settle(
        self,
        script: str,
        keys: list[str],
        head: list[Any],
        deliveries: Sequence[Delivery],
        what: str,
    ) -> None:
        handles = frame(x for d in deliveries for x in d.handle)
        try:
            await self._link.script(script, keys, [*head, handles], f"{what} on {self.name!r}")
        except rx.ResponseError as exc:
            if not is_nogroup(exc):
                raise
            # The group and its leases are gone with a Redis restart: nothing is held.
            log.warning(
                "subscription %s: %s of %d ignored: %s", self.name, what, len(deliveries), exc
            )

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        if not items:
            return
        await self._dead_letter(
            [(d, reason, error, _fields(d.event)) for d, reason, error in items]
        )

    async def _dead_letter(self, items: Sequence[tuple[Delivery, str, str, Any]]) -> None:
        values: list[Any] = []
        for d, reason, error, fields in items:
            values += (*d.handle, reason, error[:4000], 2 * len(fields))
            values += (x for pair in fields.items() for x in pair)
        args = [self.name, self.name, self.topic, frame(values)]
        try:
            await self._link.script("DEAD", self._dead_keys, args, f"dead-letter on {self.name!r}")
        except rx.ResponseError as exc:
            if not is_nogroup(exc):
                raise
            log.warning("subscription %s: dead-letter ignored: %s", self.name, exc)

    async def tidy(self, *, closing: bool = False) -> int:
        """Trim topic entries every group has acked and drop idle consumers; returns trimmed."""
        args = [
            self.name,
            self._broker.consumer,
            REAP_IDLE_MS,
            int(closing),
            int(self._link.opts.trim),
        ]
        try:
            trimmed = await self._link.script(
                "TIDY", self._keys[:2], args, f"tidy of {self.name!r}"
            )
        except rx.ResponseError as exc:
            if not is_nogroup(exc):
                raise
            return 0
        return int(trimmed)


def _fields(event: Event) -> dict[str, Any]:
    """The stream entry fields of ``event``: ``ce-*`` attributes and ``data``."""
    return {**to_headers(event), "data": encode_data(event.data)}
