"""RabbitMQ broker: ``amqp://USER:PASS@HOST:PORT/VHOST?prefix=scorebus``.

A topic is a durable fanout exchange ``<prefix>.<topic>``; a subscription is a
durable quorum queue ``<prefix>.<subscription>`` bound to it. Publishing waits
for publisher confirms; consuming uses prefetch. RabbitMQ has no visibility
timeout, so leases are kept client-side (``subscription``); retries with a
delay go through per-subscription delay queues that dead-letter back into the
subscription queue; dead letters are kept, with their reasons, in
``<prefix>.<subscription>.dlq``, which RabbitMQ's own delivery limit also feeds.

Modules: ``_options`` (URL, names, queue arguments), ``_link`` (connection,
confirmed publishing, error translation), ``_wire`` (events and dead letters as
AMQP messages), ``_registry`` (what exists under a prefix), ``subscription``
and ``broker``. See ``docs/connectors/rabbitmq.md``.
"""

from .broker import AmqpBroker
from .subscription import AmqpSubscription

__all__ = ["AmqpBroker", "AmqpSubscription"]
