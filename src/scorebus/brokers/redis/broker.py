"""``RedisBroker``: publish, subscriptions, stats, dead letters and replay."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Any

import msgspec

from ...errors import ConfigError, ScorebusError
from ...events import Event
from ..base import DeadLetter, SubscriptionStats
from ._link import Link, frame
from ._options import parse_url
from .subscription import RedisSubscription, _fields

PUBLISH_CHUNK = 500  # events per script call: one round trip, a short lock on the server


class RedisBroker:
    """Redis Streams broker. Use as an async context manager or call :meth:`close`.

    Args:
        url: ``redis://[user:pass@]host[:port][/db][?options]``; the options are
            listed in ``docs/connectors/redis.md``.

    Raises:
        ConfigError: a malformed URL or an unknown option.

    Example::

        async with RedisBroker("redis://localhost:6379/0?prefix=shop") as broker:
            await broker.publish("orders", [Event.new("order.created", {"id": 7})])
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.options = parse_url(url)
        self._link = Link(self.options)
        self._keys = self._link.keys
        # Each broker instance is one consumer of every group it reads from.
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._subs: dict[str, RedisSubscription] = {}

    async def __aenter__(self) -> RedisBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Leave the consumer groups (when nothing is pending here) and disconnect."""
        for sub in self._subs.values():
            # Best effort: a broker closing while Redis is away must not wait out the retry.
            with contextlib.suppress(ScorebusError, TimeoutError):
                await asyncio.wait_for(sub.tidy(closing=True), 2.0)
        self._subs.clear()
        await self._link.close()

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        if not events:
            return
        now = time.time()
        entries = [
            (e.id, _fields(e if e.time else msgspec.structs.replace(e, time=now))) for e in events
        ]
        for i in range(0, len(entries), PUBLISH_CHUNK):
            await self._publish(topic, entries[i : i + PUBLISH_CHUNK])

    async def _publish(self, topic: str, entries: list[tuple[str, dict[str, Any]]]) -> None:
        opts, keys = self.options, [self._keys.topic(topic), self._keys.topics]
        if opts.dedupe_s > 0:
            keys += (self._keys.seen(topic, event_id) for event_id, _ in entries)
        values: list[Any] = []
        for _, fields in entries:
            values.append(2 * len(fields))
            values += (x for pair in fields.items() for x in pair)
        args = [int(opts.dedupe_s * 1000), opts.maxlen, topic, frame(values)]
        await self._link.script("PUBLISH", keys, args, f"publish to {topic!r}")

    async def subscription(
        self, topic: str, name: str, *, ack_deadline_s: float = 60.0
    ) -> RedisSubscription:
        if not 0 < ack_deadline_s <= 3600:
            raise ConfigError(f"ack_deadline_s={ack_deadline_s}: must be in (0, 3600]")
        existing = await self._create(topic, name, ack_deadline_s)
        if existing != topic:
            raise ConfigError(
                f"subscription {name!r} already exists on topic {existing!r}, not {topic!r}"
            )
        sub = self._subs[name] = RedisSubscription(self, topic, name, ack_deadline_s)
        return sub

    async def _create(self, topic: str, name: str, ack_deadline_s: float) -> str:
        k = self._keys
        keys = [k.subs, k.sub(name), k.topic(topic), k.replay(name)]
        args = [name, topic, ack_deadline_s, time.time()]
        got = await self._link.script("SUBSCRIBE", keys, args, f"subscription {name!r}")
        return got.decode() if isinstance(got, bytes) else str(got)

    async def _subscriptions(self) -> dict[str, str]:
        """Subscription name -> topic, for every subscription under the prefix."""
        raw = await self._link.call(
            "list subscriptions", lambda: self._link.client.hgetall(self._keys.subs)
        )
        return {n.decode(): t.decode() for n, t in raw.items()}

    async def stats(self) -> list[SubscriptionStats]:
        k = self._keys
        subs = await self._subscriptions()
        out = []
        for name, topic in sorted(subs.items()):
            keys = [
                k.topic(topic),
                k.replay(name),
                k.lease(name),
                k.sub(name),
                k.dlq(name),
                k.replayed(name),
            ]
            pending, in_flight, acked, dead = await self._link.script(
                "STATS", keys, [name], "stats"
            )
            out.append(
                SubscriptionStats(
                    subscription=name,
                    topic=topic,
                    pending=pending,
                    in_flight=in_flight,
                    acked=acked,
                    dead_lettered=dead,
                )
            )
        # Topics published to before any subscription: kept for the first one (see docs).
        client = self._link.client
        topics = await self._link.call("stats", lambda: client.smembers(k.topics))
        for topic in sorted({t.decode() for t in topics} - set(subs.values())):
            count = await self._link.call("stats", partial(client.xlen, k.topic(topic)))
            if count:
                out.append(SubscriptionStats.unclaimed(topic, count))
        return out

    async def dead_letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        names = [subscription] if subscription is not None else sorted(await self._subscriptions())
        out: list[DeadLetter] = []
        for name in names:
            out += await self._letters(name, limit, include_replayed)
        out.sort(key=lambda d: d.id)
        return out[:limit]

    async def _letters(self, name: str, limit: int, include_replayed: bool) -> list[DeadLetter]:
        client, k = self._link.client, self._keys
        replayed = {
            int(i): float(t)
            for i, t in (
                await self._link.call("list dead letters", lambda: client.hgetall(k.replayed(name)))
            ).items()
        }
        out: list[DeadLetter] = []
        start = "-"
        while len(out) < limit:
            read = partial(client.xrange, k.dlq(name), start, "+", count=500)
            page = await self._link.call("list dead letters", read)
            for entry_id, fields in page:
                dl_id = int(entry_id.split(b"-")[0])
                if include_replayed or dl_id not in replayed:
                    out.append(_dead_letter(dl_id, name, fields, replayed.get(dl_id)))
            if len(page) < 500:
                break
            start = "(" + page[-1][0].decode()
        return out[:limit]

    async def replay(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        client, k = self._link.client, self._keys
        owners = await self._link.call("replay", lambda: client.hmget(k.dlq_index, list(ids)))
        by_sub: dict[str, list[int]] = defaultdict(list)
        for dl_id, owner in zip(ids, owners, strict=True):
            if owner is not None:
                by_sub[owner.decode()].append(dl_id)
        done = 0
        for name, sub_ids in by_sub.items():
            keys = [k.dlq(name), k.replayed(name), k.replay(name)]
            done += int(await self._link.script("REPLAY", keys, [time.time(), *sub_ids], "replay"))
        return done


def _dead_letter(
    dl_id: int, name: str, fields: dict[bytes, bytes], replayed_at: float | None
) -> DeadLetter:
    text = {key.decode(): v.decode(errors="replace") for key, v in fields.items() if key != b"data"}
    attrs: dict[str, str] = {}
    for key, value in text.items():
        if key.startswith("ce-"):
            if key != "ce-specversion":
                attrs[key[3:]] = value
        elif key == "content-type":
            attrs["datacontenttype"] = value
        elif not key.startswith("dl-"):
            attrs[key] = value  # a foreign entry's own fields, kept for triage
    return DeadLetter(
        id=dl_id,
        subscription=name,
        topic=text.get("dl-topic", ""),
        event_id=text.get("ce-id") or f"redis:{text.get('dl-entry', '')}",
        event_type=text.get("ce-type", ""),
        reason=text.get("dl-reason", ""),
        error=text.get("dl-error", ""),
        attempts=int(text.get("dl-attempts", "0")),
        dead_at=float(text.get("dl-dead-at", "0")) / 1000,
        payload=fields.get(b"data", b""),
        attributes=attrs,
        replayed_at=replayed_at,
    )
