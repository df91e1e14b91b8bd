"""Redis Streams broker: ``redis://HOST:PORT/DB?prefix=...``.

A topic is a stream, a subscription a consumer group on it, each
:class:`RedisBroker` instance one consumer (``host-pid-random``). Keys, all
under ``PREFIX:`` (default ``scorebus``)::

    topic:<topic>       stream of events: ce-* fields + data (CloudEvents binary mode)
    subs                hash subscription -> topic; sub:<name> its ack deadline and acked count
    replay:<sub>        stream only this subscription's group reads: replayed dead letters
    lease:<sub>         ZSET of explicit lease ends (nack delays, extensions), server ms
    dlq:<sub>           stream of dead letters, ids <n>-0 from the counter dlq-seq
    replayed:<sub>      hash dead-letter id -> replay time; dlq-index: id -> subscription
    seen:<topic>:<id>   publish dedupe marks (expire after the window); topics: set

A lease is Redis's own pending entry: a delivery is held until it has been idle
for the ack deadline, or until the explicit end in ``lease:<sub>`` that a nack
or extend set. ``attempt`` is the entry's delivery count, which every
redelivery raises; a settle carries the count it was delivered with, so a
consumer whose lease ran out cannot ack, nack or extend the new holder's lease.
The first subscription on a topic adopts what was published before it (its
group starts at 0); later ones start at the end. See ``docs/connectors/redis.md``.
"""

from .broker import RedisBroker
from .subscription import RedisSubscription

__all__ = ["RedisBroker", "RedisSubscription"]
