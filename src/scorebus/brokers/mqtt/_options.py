"""The ``mqtt://`` URL, and the MQTT topic names derived from it.

    mqtt://[USER:PASSWORD@]HOST[:PORT][?OPTION=VALUE&...]

Options (all optional):

    prefix=scorebus      scorebus topic ``T`` is the MQTT topic ``PREFIX/T`` (empty: ``T``)
    protocol=5           5 (CloudEvents attributes as user properties) or 3.1.1
                         (whole events as CloudEvents structured-mode JSON)
    state=.scorebus/mqtt folder for this host's slot locks, parked messages, lease
                         counts and dead letters (shared by the worker processes of a
                         host), in a sub-folder HOST-PORT-PREFIX
    dlq=STATE/HOST-PORT-PREFIX/dead_letters.db  the dead-letter store (SQLite)
    node=<host digest>   this host's name in client ids (set it where hostnames change)
    expiry=never         MQTT 5 session expiry of a subscription's sessions, seconds
    inflight=65535       MQTT 5 Receive Maximum: unacked messages Mosquitto may push
    device_type=mqtt.message  CloudEvents ``type`` given to bare (non-CloudEvent) payloads
    spool=0 (5) / 1 (3.1.1)   1: park each message on the host as it arrives and PUBACK it
                         then (see ``_local``), instead of holding it unacked in memory
    retry=30             seconds to keep retrying a lost connection before giving up
    timeout=10           seconds to connect and to wait for an acknowledgement
    keepalive=30         MQTT keep-alive, seconds
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from ...errors import ConfigError

NEVER = 0xFFFFFFFF  # MQTT 5: a session expiry interval that never runs out
_DEFAULTS = {
    "prefix": "scorebus",
    "protocol": "5",
    "state": ".scorebus/mqtt",
    "dlq": "",
    "node": "",
    "expiry": "never",
    "inflight": "65535",
    "device_type": "mqtt.message",
    "spool": "",
    "retry": "30",
    "timeout": "10",
    "keepalive": "30",
}
_NAME = re.compile(r"^[A-Za-z0-9_.:@=-]{1,100}$")
INTERNAL = "_scorebus"


@dataclass(frozen=True, kw_only=True)
class MqttOptions:
    """A parsed ``mqtt://`` URL; ``where`` is the URL without credentials or options."""

    host: str
    port: int
    username: str | None
    password: str | None
    prefix: str
    v5: bool
    state: Path
    dlq: Path
    node: str
    expiry_s: int
    inflight: int
    device_type: str
    spool: bool
    retry_s: float
    timeout_s: float
    keepalive_s: int

    @property
    def where(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    # ------------------------------------------------------------ topic names

    def topic(self, topic: str) -> str:
        """The MQTT topic (or filter) of scorebus topic ``topic``."""
        return f"{self.prefix}/{topic}" if self.prefix else topic

    def scorebus_topic(self, mqtt_topic: str) -> str:
        return mqtt_topic[len(self.prefix) + 1 :] if self.prefix else mqtt_topic

    @property
    def base(self) -> str:
        # Internal topics live beside the prefix, never under it, so no user
        # filter (``sensors/#``) can match them.
        return f"{INTERNAL}/{self.prefix}" if self.prefix else INTERNAL

    def queue(self, subscription: str) -> str:
        """The topic only ``subscription``'s group reads: nacks, replays, hand-offs."""
        return f"{self.base}/q/{subscription}"

    def sync(self, client_id: str) -> str:
        return f"{self.base}/sync/{client_id}"

    def registry(self) -> str:
        return f"{self.base}/reg/#"

    def sub_marker(self, subscription: str) -> str:
        return f"{self.base}/reg/sub/{subscription}"

    def live_marker(self, subscription: str, client_id: str) -> str:
        return f"{self.base}/reg/live/{subscription}/{client_id}"

    def digest(self, subscription: str) -> str:
        return hashlib.sha1(
            f"{self.host}:{self.port}/{self.prefix}\0{subscription}".encode()
        ).hexdigest()[:12]


def check_topic(topic: str, *, filter_ok: bool) -> str:
    """``topic`` if it is a usable scorebus topic (a filter when ``filter_ok``).

    Raises:
        ConfigError: empty, a NUL, a wildcard where none may be, a misplaced
            wildcard, or a name that would reach scorebus's internal topics.
    """
    levels = topic.split("/")
    bad = (
        not topic
        or "\0" in topic
        or topic.startswith("$")
        or levels[0] == INTERNAL
        or any(("+" in lv and lv != "+") or ("#" in lv and lv != "#") for lv in levels)
        or "#" in levels[:-1]
    )
    wild = "+" in levels or "#" in levels
    if bad or (wild and not filter_ok) or (wild and levels[0] in ("+", "#")):
        kind = "subscription filter" if filter_ok else "topic to publish to"
        raise ConfigError(
            f"bad MQTT {kind} {topic!r}: use levels separated by '/', wildcards '+' and a"
            f" final '#' only in subscriptions and not as the first level, no leading '$',"
            f" and not '{INTERNAL}/...'"
        )
    return topic


def check_name(name: str) -> str:
    """``name`` if it can be an MQTT shared-subscription group name."""
    if not _NAME.match(name):
        raise ConfigError(
            f"bad MQTT subscription name {name!r}: use 1-100 letters, digits and _ . : @ = -"
            " (it becomes a shared-subscription group, so no '/', '+' or '#')"
        )
    return name


def parse_url(url: str) -> MqttOptions:
    """The options of ``url``.

    Raises:
        ConfigError: not an ``mqtt://`` URL, a bad port, an unknown option or a
            value of the wrong kind (the message names the valid options).
    """
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ConfigError(
            f"bad MQTT URL {url!r}: expected mqtt://[user:pass@]host[:port][?options]"
        )
    try:
        port = parts.port or 1883
    except ValueError as exc:
        raise ConfigError(f"bad MQTT URL {url!r}: the port is not a number") from exc
    if parts.path.strip("/"):
        raise ConfigError(f"bad MQTT URL {url!r}: no path expected; options go after '?'")
    given = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(given) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r} in MQTT URL {url!r}: valid options are "
            + ", ".join(sorted(_DEFAULTS))
        )
    opt = {**_DEFAULTS, **given}
    prefix = opt["prefix"].strip("/")
    if prefix:
        check_topic(prefix, filter_ok=False)
    if opt["protocol"] not in ("5", "3.1.1"):
        raise ConfigError(f"MQTT URL {url!r}: protocol must be 5 or 3.1.1, not {opt['protocol']!r}")
    node = opt["node"] or hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
    if not re.match(r"^[A-Za-z0-9_-]{1,32}$", node):
        raise ConfigError(f"MQTT URL {url!r}: node must be 1-32 letters, digits, '_' or '-'")
    # One folder per server and prefix: parked events and slots of different
    # deployments never mix even when they share ``state``.
    where = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{parts.hostname}-{port}-{prefix or '_'}")
    state = Path(opt["state"]) / where
    return MqttOptions(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        prefix=prefix,
        v5=opt["protocol"] == "5",
        state=state,
        dlq=Path(opt["dlq"]) if opt["dlq"] else state / "dead_letters.db",
        node=node,
        expiry_s=NEVER if opt["expiry"] == "never" else int(_number(url, opt, "expiry", 1, NEVER)),
        inflight=int(_number(url, opt, "inflight", 1, 65535)),
        device_type=opt["device_type"] or "mqtt.message",
        spool=_flag(url, opt, "spool", default=opt["protocol"] != "5"),
        retry_s=_number(url, opt, "retry", 0, 86400),
        timeout_s=_number(url, opt, "timeout", 0.1, 3600),
        keepalive_s=int(_number(url, opt, "keepalive", 5, 65535)),
    )


def _number(url: str, opt: dict[str, str], key: str, lo: float, hi: float) -> float:
    try:
        value = float(opt[key])
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:
        raise ConfigError(
            f"MQTT URL {url!r}: {key} must be a number in [{lo:g}, {hi:g}], not {opt[key]!r}"
        )
    return value


def _flag(url: str, opt: dict[str, str], key: str, *, default: bool) -> bool:
    value = opt[key].lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"MQTT URL {url!r}: {key} must be 0 or 1, not {opt[key]!r}")
