"""The embedded durable broker: one SQLite file, many processes.

``sqlite:///.scorebus/bus.db``. One table holds every message of every
subscription (fan-out writes one row per subscription). A pull leases fresh
messages as a *range*: one ``leases`` row (first and last ``seq``, deadline)
and a moved cursor, so the hot path writes nothing per message until the ack
deletes it. Messages that are redelivered, nacked or left by a lease that ran
out get a lease of their own (``visible_at`` in the future, ``attempts``
counting deliveries), as in Pub/Sub; ``schema.py`` has the three states.
Competing consumers in different processes are safe because each lease is
taken in one write transaction. Dead letters move to their own table in the
same transaction that removes them from the queue.

Unlike Pub/Sub, messages published to a topic that has no subscription yet are
kept and handed to the first subscription created on it, so ``scorebus
publish`` before ``scorebus run`` loses nothing. Publishes are deduplicated by
``(topic, event id)`` within ``dedupe_window_s``, like NATS JetStream's
``Nats-Msg-Id`` window, so the outbox relay cannot publish a result twice.
"""

from .broker import SqliteBroker
from .subscription import SqliteSubscription

__all__ = ["SqliteBroker", "SqliteSubscription"]
