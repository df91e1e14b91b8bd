"""The ``nats://`` URL, its options, and the names it derives on the server.

    nats://[USER:PASSWORD@]HOST[:PORT][?prefix=scorebus&dlq=.scorebus/dead_letters.db&...]

A topic is the subject ``<prefix>.<topic>`` in one stream per prefix that holds
``<prefix>.>``; a subscription is a durable pull consumer on that stream whose
name is derived from the subscription's (consumer names cannot hold dots).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ...errors import ConfigError

DEFAULT_PORT = 4222
# Subjects under <prefix>._scorebus are the adapter's own (dead-letter markers).
RESERVED = "_scorebus"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*$")
_BAD_TOKEN = re.compile(r"[\s*>]")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, kw_only=True)
class NatsOptions:
    """Everything the URL says. See ``docs/connectors/nats.md`` for each option."""

    server: str  # handed to nats-py, credentials included
    display: str  # for messages: nats://HOST:PORT, never the password
    prefix: str = "scorebus"
    stream: str = "scorebus"
    dlq: str = ".scorebus/dead_letters.db"
    max_age_s: float = 0.0
    dedupe_window_s: float = 120.0
    replicas: int = 1
    storage: str = "file"
    max_ack_pending: int = 10_000
    connect_timeout_s: float = 2.0
    retry_s: float = 10.0
    request_timeout_s: float = 5.0

    def subject(self, topic: str) -> str:
        """The subject of ``topic``.

        Raises:
            ConfigError: the topic is empty, has whitespace or wildcards, or is reserved.
        """
        tokens = topic.split(".")
        if not topic or any(not t or _BAD_TOKEN.search(t) for t in tokens):
            raise ConfigError(
                f"topic {topic!r}: NATS subjects need non-empty dot-separated tokens"
                " without spaces, '*' or '>'"
            )
        if tokens[0] == RESERVED:
            raise ConfigError(f"topic {topic!r}: names starting with {RESERVED!r} are reserved")
        return f"{self.prefix}.{topic}"

    def topic_of(self, subject: str) -> str:
        return subject[len(self.prefix) + 1 :]

    def dead_marker(self, durable: str) -> str:
        """The subject counting the messages a subscription dead-lettered (see stats)."""
        return f"{self.prefix}.{RESERVED}.dead.{durable}"


def durable_name(subscription: str) -> str:
    """The consumer name for a subscription: safe characters, unique per name."""
    if not subscription:
        raise ConfigError("subscription name must not be empty")
    safe = _SAFE_NAME.sub("_", subscription)[:64]
    if safe == subscription:
        return safe
    # Mapping "a.b" and "a_b" to one consumer would merge two subscriptions.
    return f"{safe}_{hashlib.sha256(subscription.encode()).hexdigest()[:10]}"


def describe(subscription: str, topic: str, base: int) -> str:
    """The consumer description: who owns it, and the stats baseline (see stats)."""
    return json.dumps({"scorebus": 1, "subscription": subscription, "topic": topic, "base": base})


def described(description: str | None) -> tuple[str, str, int] | None:
    """``(subscription, topic, base)`` of a consumer made by scorebus, else ``None``."""
    try:
        meta = json.loads(description or "")
        return str(meta["subscription"]), str(meta["topic"]), int(meta.get("base", 0))
    except (ValueError, TypeError, KeyError):
        return None


def _seconds(key: str, raw: str) -> float:
    match = _DURATION.match(raw)
    if match is None:
        raise ConfigError(f"nats URL option {key}={raw!r}: expected seconds, e.g. 30, 500ms, 7d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _positive_int(key: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"nats URL option {key}={raw!r}: expected a positive integer")
    return int(raw)


def _name(key: str, raw: str) -> str:
    if not raw or _BAD_TOKEN.search(raw) or raw.startswith(".") or raw.endswith(".") or ".." in raw:
        raise ConfigError(f"nats URL option {key}={raw!r}: not a valid NATS subject or name")
    return raw


_PARSERS = {
    "prefix": _name,
    "stream": _name,
    "dlq": lambda key, raw: raw,
    "max_age": _seconds,
    "dedupe_window": _seconds,
    "replicas": _positive_int,
    "storage": lambda key, raw: raw,
    "max_ack_pending": _positive_int,
    "connect_timeout": _seconds,
    "retry": _seconds,
    "request_timeout": _seconds,
}
_FIELDS = {"max_age": "max_age_s", "dedupe_window": "dedupe_window_s"} | {
    k: f"{k}_s" for k in ("connect_timeout", "retry", "request_timeout")
}


def parse_url(url: str) -> NatsOptions:
    """Parse ``nats://...``.

    Raises:
        ConfigError: wrong scheme, no host, or an unknown or malformed option.
    """
    parts = urlsplit(url)
    if parts.scheme != "nats" or not parts.hostname:
        raise ConfigError(f"bad NATS URL {url!r}: expected nats://HOST:PORT[?option=value&...]")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ConfigError(f"bad NATS URL {url!r}: {exc}") from exc
    values: dict[str, Any] = {}
    for key, raw in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PARSERS:
            raise ConfigError(
                f"unknown nats URL option {key!r}: valid options are {', '.join(sorted(_PARSERS))}"
            )
        values[_FIELDS.get(key, key)] = _PARSERS[key](key, raw)
    if values.get("storage", "file") not in ("file", "memory"):
        raise ConfigError(f"nats URL option storage={values['storage']!r}: expected file or memory")
    prefix = str(values.setdefault("prefix", "scorebus"))
    # Stream names cannot hold dots; the prefix's dots become underscores.
    values.setdefault("stream", prefix.replace(".", "_"))
    if "." in str(values["stream"]):
        raise ConfigError(f"nats URL option stream={values['stream']!r}: no dots in stream names")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    auth = parts.netloc.rpartition("@")[0]
    return NatsOptions(
        server=f"nats://{auth + '@' if auth else ''}{host}:{port}",
        display=f"nats://{host}:{port}",
        **values,
    )
