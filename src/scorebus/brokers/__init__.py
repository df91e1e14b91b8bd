"""Brokers: one protocol (publish, subscription -> Delivery), one module per backend."""

from __future__ import annotations

from .._extras import load_backend
from ..errors import ConfigError
from .base import Broker, DeadLetter, Delivery, Subscription, SubscriptionStats, iterate

# scheme -> (module, class, pip extra). Backends are imported only when used,
# so a missing optional SDK fails with the pip command that installs it.
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "sqlite": ("sqlite", "SqliteBroker", None),
    "redis": ("redis", "RedisBroker", "redis"),
    "nats": ("nats", "NatsBroker", "nats"),
    "amqp": ("amqp", "AmqpBroker", "amqp"),
    "mqtt": ("mqtt", "MqttBroker", "mqtt"),
    "pubsub": ("pubsub", "PubSubBroker", "gcp"),
}
SCHEMES = (*BACKENDS, "memory")


def open_broker(url: str) -> Broker:
    """A broker from its URL: ``sqlite:///path/bus.db`` or ``memory://NAME``.

    Raises:
        ConfigError: the scheme is unknown (the message lists the valid ones).
    """
    scheme = url.partition("://")[0]
    if scheme in BACKENDS:
        module, cls, extra = BACKENDS[scheme]
        return load_backend(__name__, module, cls, extra)(url)  # type: ignore[no-any-return]
    if scheme == "memory":
        from .memory import MemoryBroker

        return MemoryBroker.named(url.partition("://")[2] or "default")
    raise ConfigError(
        f"unknown broker URL {url!r}: valid schemes are {', '.join(s + '://' for s in SCHEMES)}"
    )


__all__ = [
    "Broker",
    "DeadLetter",
    "Delivery",
    "Subscription",
    "SubscriptionStats",
    "iterate",
    "open_broker",
]
