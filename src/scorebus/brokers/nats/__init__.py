"""NATS JetStream: ``nats://HOST:PORT?prefix=scorebus`` (``pip install 'scorebus[nats]'``).

How the broker contract maps onto JetStream (details in ``docs/connectors/nats.md``):

- topic: the subject ``<prefix>.<topic>`` in one limits-retention stream per
  prefix (``<prefix>.>``); publishes carry ``Nats-Msg-Id = <topic>:<event id>``,
  so JetStream drops a republished event within its duplicate window;
- subscription: a durable pull consumer, AckPolicy explicit, AckWait = the
  lease, MaxDeliver unlimited (the runtime counts attempts), filtered on the
  topic's subject; the first one on a topic starts at its first message;
- attempt: the delivery count JetStream keeps per message;
- nack(delay) and extend(s): NAK with a delay; ack: ACK; dead letter: a row in
  scorebus's dead-letter store, then TERM;
- replay: republished to the topic for the one subscription that gave up on it.
"""

from __future__ import annotations

from .broker import NatsBroker
from .subscription import NatsSubscription

__all__ = ["NatsBroker", "NatsSubscription"]
