"""Dead letters kept in RabbitMQ: listed, shown and replayed from the DLQs.

Each subscription's dead letters are messages of the classic queue
``<prefix>.<subscription>.dlq``: written there by scorebus with its reason
headers, or by RabbitMQ itself when the quorum queue's delivery limit is
reached. Listing gets every message and closes the channel, which returns them
in place; replay acks the chosen ones after their copies are confirmed, and
leaves a record in ``<prefix>.<subscription>.dlq:replayed`` (the newest
10,000), which is what ``include_replayed`` lists.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from aiormq import spec

from ..base import DeadLetter
from ._link import Link, Outgoing
from ._options import AmqpOptions
from ._wire import (
    ATTEMPTS,
    DL_AT,
    DL_ERROR,
    DL_ID,
    DL_REASON,
    DL_TOPIC,
    REPLAYED_AT,
    copy_of,
    dead_letter_of,
)


class DeadLetterQueues:
    def __init__(self, link: Link, opts: AmqpOptions) -> None:
        self._link = link
        self._opts = opts

    def _letter(
        self, props: spec.Basic.Properties, body: bytes, name: str, topic: str
    ) -> DeadLetter:
        return dead_letter_of(
            props, body, subscription=name, topic=topic, delivery_limit=self._opts.delivery_limit
        )

    async def list(
        self, subs: Iterable[tuple[str, str]], *, limit: int, include_replayed: bool
    ) -> list[DeadLetter]:
        """Dead letters of ``(subscription, topic)`` pairs, oldest first."""
        o = self._opts
        letters: list[DeadLetter] = []
        for name, topic in subs:
            sources = [o.dlq(name), o.replayed(name)] if include_replayed else [o.dlq(name)]
            for queue in sources:
                async with self._link.browse(queue, limit) as (_, msgs):
                    letters += [
                        self._letter(m.header.properties, m.body, name, topic) for m in msgs
                    ]
        letters.sort(key=lambda d: (d.dead_at, d.id))
        return letters[:limit]

    async def replay(self, subs: Iterable[tuple[str, str]], ids: Sequence[int]) -> int:
        """Copy the chosen letters back onto their subscription queue (the default
        exchange, so no other subscription of the topic sees them) without the
        attempt count, record them as replayed, then remove them from the DLQ."""
        o = self._opts
        wanted = set(ids)
        done = 0
        for name, topic in subs:
            if not wanted:
                break
            async with self._link.browse(o.dlq(name), 10_000_000) as (ch, msgs):
                chosen = []
                for m in msgs:
                    letter = self._letter(m.header.properties, m.body, name, topic)
                    if letter.id in wanted:
                        chosen.append((m, letter))
                if not chosen:
                    continue
                now = time.time()
                back: list[Outgoing] = []
                records: list[Outgoing] = []
                for m, letter in chosen:
                    props = m.header.properties
                    back.append(("", o.queue(name), m.body, copy_of(props)))
                    records.append(
                        ("", o.replayed(name), m.body, copy_of(props, _record(letter, now)))
                    )
                await self._link.declare_queue(o.replayed(name), o.replayed_args())
                await self._link.publish(back, f"replaying dead letters of {name!r}")
                await self._link.publish(records, f"recording replayed dead letters of {name!r}")
                for m, letter in chosen:
                    await ch.basic_ack(m.delivery_tag or 0)
                    wanted.discard(letter.id)
                done += len(chosen)
        return done


def _record(letter: DeadLetter, replayed_at: float) -> dict[str, object]:
    return {
        DL_ID: letter.id,
        DL_REASON: letter.reason,
        DL_ERROR: letter.error,
        ATTEMPTS: letter.attempts,
        DL_AT: letter.dead_at,
        DL_TOPIC: letter.topic,
        REPLAYED_AT: replayed_at,
    }
