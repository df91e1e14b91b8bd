"""The ``amqp://`` URL, its options, and the names and arguments of what we declare.

Everything a process declares is derived from the URL's ``prefix`` and a topic or
subscription name, so two processes with the same URL agree on the topology
without talking to each other.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from ...errors import ConfigError

# option -> (parser, default, what it is); the docs page lists the same options.
_OPTIONS: dict[str, tuple[type, Any, str]] = {
    "prefix": (str, "scorebus", "namespace of every exchange and queue"),
    "prefetch": (int, 512, "deliveries buffered per subscription (basic.qos)"),
    "delivery_limit": (int, 20, "quorum x-delivery-limit, 0 for none"),
    "timeout": (float, 15.0, "seconds for connecting and for each broker call"),
    "reconnect_interval": (float, 1.0, "seconds between reconnection attempts"),
    "heartbeat": (int, 30, "AMQP heartbeat in seconds"),
}
# The dead-letter queue is browsed (got and returned) on every listing, so it is a
# classic queue: no delivery limit to trip, and returned messages keep their place.
REPLAYED_MAX = 10_000
MAX_NAME = 255  # AMQP short string
_NAME = re.compile(r"[a-zA-Z0-9\-_.:@#,/+ ]+")  # what the AMQP client library accepts


@dataclass(frozen=True, slots=True)
class AmqpOptions:
    """A parsed ``amqp://`` URL: where to connect and how to name things."""

    host: str
    port: int
    vhost: str
    user: str
    password: str
    prefix: str
    prefetch: int
    delivery_limit: int
    timeout: float
    reconnect_interval: float
    heartbeat: int

    @property
    def display(self) -> str:
        """``amqp://host:port/vhost`` without credentials: safe to print and log."""
        vhost = "" if self.vhost == "/" else quote(self.vhost, safe="")
        return f"amqp://{self.host}:{self.port}/{vhost}"

    @property
    def redacted(self) -> str:
        """The URL with the password masked (the broker's ``url``)."""
        query = urlencode({k: getattr(self, k) for k in _OPTIONS})
        vhost = quote(self.vhost, safe="")
        return f"amqp://{quote(self.user, safe='')}:***@{self.host}:{self.port}/{vhost}?{query}"

    @property
    def connect_url(self) -> str:
        """The URL handed to aio-pika (credentials, vhost, connection settings)."""
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        query = urlencode(
            {"heartbeat": self.heartbeat, "reconnect_interval": self.reconnect_interval}
        )
        return f"amqp://{auth}@{self.host}:{self.port}/{quote(self.vhost, safe='')}?{query}"

    # ---------------------------------------------------------------- names

    def exchange(self, topic: str) -> str:
        return _checked(f"{self.prefix}.{topic}")

    def unrouted(self, topic: str) -> str:
        """Alternate exchange of a topic: gets what no subscription queue took."""
        return _checked(f"{self.prefix}.{topic}:unrouted")

    def unclaimed(self, topic: str) -> str:
        """Holding queue of a topic published to before it had a subscription."""
        return _checked(f"{self.prefix}.{topic}:unclaimed")

    def queue(self, subscription: str) -> str:
        return _checked(f"{self.prefix}.{subscription}")

    def dlq(self, subscription: str) -> str:
        return _checked(f"{self.prefix}.{subscription}.dlq")

    def replayed(self, subscription: str) -> str:
        return _checked(f"{self.prefix}.{subscription}.dlq:replayed")

    def delay(self, subscription: str, bucket_ms: int) -> str:
        return _checked(f"{self.prefix}.{subscription}:delay.{bucket_ms}")

    @property
    def registry(self) -> str:
        return _checked(f"{self.prefix}:registry")

    # ---------------------------------------------------------------- arguments

    def queue_args(self, subscription: str) -> dict[str, Any]:
        """A subscription queue: quorum, with RabbitMQ's own delivery limit as the
        safety net behind scorebus's ``max_attempts`` (both land in the same DLQ)."""
        args: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dlq(subscription),
            # at-least-once dead-lettering needs reject-publish overflow.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        if self.delivery_limit:
            args["x-delivery-limit"] = self.delivery_limit
        return args

    def delay_args(self, subscription: str) -> dict[str, Any]:
        """A delay queue: nobody consumes it; expired messages go back to the
        subscription queue only (default exchange, the queue's name as key)."""
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.queue(subscription),
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    @staticmethod
    def holding_args() -> dict[str, Any]:
        return {"x-queue-type": "quorum"}

    @staticmethod
    def dlq_args() -> dict[str, Any]:
        return {"x-queue-type": "classic"}

    @staticmethod
    def replayed_args() -> dict[str, Any]:
        return {"x-queue-type": "classic", "x-max-length": REPLAYED_MAX}


def delay_bucket_ms(delay_s: float) -> tuple[int, int]:
    """``(bucket, delay_ms)``: each power-of-two band of delays has its own queue.

    Messages expire only at the head of a queue, so one queue for every delay would
    hold a 100 ms retry behind a 60 s one; within a band the wait is at most
    doubled, and never shorter than asked.
    """
    ms = min(max(1, math.ceil(delay_s * 1000)), 2**31 - 1)
    return 1 << (ms.bit_length() - 1), ms


def parse_url(url: str) -> AmqpOptions:
    """Parse ``amqp://USER:PASS@HOST:PORT/VHOST?option=value``.

    Raises:
        ConfigError: not an ``amqp://`` URL, an unknown option, or a bad value.
    """
    parts = urlsplit(url)
    if parts.scheme != "amqp":
        raise ConfigError("not a RabbitMQ URL: expected amqp://USER:PASS@HOST:PORT/VHOST")
    try:
        port = parts.port or 5672
    except ValueError as exc:
        raise ConfigError(f"bad port in RabbitMQ URL amqp://{parts.hostname}: {exc}") from exc
    values: dict[str, Any] = {k: default for k, (_, default, _) in _OPTIONS.items()}
    for key, raw in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _OPTIONS:
            raise ConfigError(
                f"unknown option {key!r} in RabbitMQ URL: valid options are {', '.join(_OPTIONS)}"
            )
        parser = _OPTIONS[key][0]
        try:
            values[key] = parser(raw)
        except ValueError as exc:
            raise ConfigError(f"option {key}={raw!r} in RabbitMQ URL: {exc}") from exc
    _validate(values)
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    return AmqpOptions(
        host=parts.hostname or "localhost",
        port=port,
        vhost=path or "/",
        user=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        **values,
    )


def _validate(v: dict[str, Any]) -> None:
    prefix = v["prefix"]
    if not prefix or prefix.startswith("amq.") or len(prefix) > 100:
        raise ConfigError(
            f"option prefix={prefix!r}: must be 1-100 characters and not start with 'amq.'"
        )
    if not 1 <= v["prefetch"] <= 65535:
        raise ConfigError(f"option prefetch={v['prefetch']}: must be in 1..65535")
    if v["delivery_limit"] < 0:
        raise ConfigError(f"option delivery_limit={v['delivery_limit']}: must be >= 0")
    if not v["timeout"] > 0 or not v["reconnect_interval"] > 0:
        raise ConfigError("options timeout and reconnect_interval must be > 0 seconds")
    if v["heartbeat"] < 0:
        raise ConfigError(f"option heartbeat={v['heartbeat']}: must be >= 0")


def _checked(name: str) -> str:
    if len(name.encode()) > MAX_NAME:
        raise ConfigError(f"RabbitMQ name {name[:60]!r}...: longer than {MAX_NAME} bytes")
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"RabbitMQ name {name!r}: prefix, topic and subscription names may use only"
            " letters, digits, spaces and - _ . : @ # , / +"
        )
    return name
