"""The ``pubsub://PROJECT?...`` URL and its options.

Every option, with its default:

=========================  ==========================  ===========================================
option                     default                     meaning
=========================  ==========================  ===========================================
``emulator``               (none)                      ``HOST:PORT`` of a Pub/Sub emulator: plain
                                                       gRPC, no credentials
``endpoint``               ``pubsub.googleapis.com``   API endpoint for real Pub/Sub (e.g. a
                           ``:443``                    regional ``europe-west1-pubsub...:443``)
``dlq``                    ``.scorebus/dead_letters``  file of scorebus's dead-letter store, which
                           ``.db``                     ``scorebus dlq`` lists and replays
``ordering``               ``none``                    ``subject``: publish with ``ordering_key``
                                                       = event subject and create subscriptions
                                                       with message ordering
``max_delivery_attempts``  ``100``                     Pub/Sub dead-letter policy of created
                                                       subscriptions (5-100); ``0``: none, and
                                                       attempts are then counted in-process
``retention_s``            ``604800``                  message retention of created subscriptions
                                                       (600-604800 s)
``publish_max_messages``   ``1000``                    messages per publish request (1-1000)
``publish_max_bytes``      ``9000000``                 bytes per publish request (<= 10 MB)
``create``                 ``all``                     ``none``: publish to existing topics only,
                                                       creating nothing (for an identity that
                                                       holds only ``roles/pubsub.publisher``)
=========================  ==========================  ===========================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from ...errors import ConfigError

MAX_MESSAGE_BYTES = 10_000_000
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9.:-]{1,61}[a-z0-9]$")
# Pub/Sub's own rule for topic and subscription ids.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
_INTS = {
    "max_delivery_attempts": (0, 100),
    "retention_s": (600, 604_800),
    "publish_max_messages": (1, 1000),
    "publish_max_bytes": (1024, MAX_MESSAGE_BYTES),
}


@dataclass(frozen=True, kw_only=True)
class PubSubOptions:
    """A parsed ``pubsub://`` URL (see the module docstring for each option)."""

    project: str
    emulator: str | None = None
    endpoint: str = "pubsub.googleapis.com:443"
    dlq: str = ".scorebus/dead_letters.db"
    ordering: bool = False
    max_delivery_attempts: int = 100
    retention_s: int = 604_800
    publish_max_messages: int = 1000
    publish_max_bytes: int = 9_000_000
    create: bool = True

    @property
    def where(self) -> str:
        """The server, as error messages name it."""
        if self.emulator:
            return f"Pub/Sub emulator at {self.emulator}"
        return f"Pub/Sub at {self.endpoint} (project {self.project})"

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"


def parse_url(url: str) -> PubSubOptions:
    """Parse ``pubsub://PROJECT?opt=value&...``.

    Raises:
        ConfigError: not a ``pubsub://`` URL, a bad project id, an unknown option
            or a value out of range (the message names the valid ones).
    """
    parts = urlsplit(url)
    project = parts.netloc
    if parts.scheme != "pubsub" or not _PROJECT.match(project) or parts.path not in ("", "/"):
        raise ConfigError(
            f"bad Pub/Sub URL {url!r}: expected pubsub://PROJECT_ID[?option=value&...]"
            " (for the emulator: pubsub://my-project?emulator=127.0.0.1:8085)"
        )
    values: dict[str, object] = {"project": project}
    known = {"emulator", "endpoint", "dlq", "ordering", "create", *_INTS}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in known:
            raise ConfigError(
                f"unknown option {key!r} in {url!r}: valid options are {', '.join(sorted(known))}"
            )
        if key in _INTS:
            values[key] = _int_option(url, key, value)
        elif key == "create":
            if value not in ("all", "none"):
                raise ConfigError(f"create={value!r} in {url!r}: expected 'all' or 'none'")
            values[key] = value == "all"
        elif key == "ordering":
            if value not in ("subject", "none"):
                raise ConfigError(f"ordering={value!r} in {url!r}: expected 'subject' or 'none'")
            values[key] = value == "subject"
        elif key in ("emulator", "endpoint") and not re.match(r"^[\w.\-\[\]:]+:\d+$", value):
            raise ConfigError(f"{key}={value!r} in {url!r}: expected HOST:PORT")
        else:
            values[key] = value
    attempts = values.get("max_delivery_attempts", 100)
    if attempts != 0 and not 5 <= attempts <= 100:  # type: ignore[operator]
        raise ConfigError(f"max_delivery_attempts={attempts} in {url!r}: 0 (none) or 5-100")
    return PubSubOptions(**values)  # type: ignore[arg-type]


def _int_option(url: str, key: str, value: str) -> int:
    low, high = _INTS[key]
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ConfigError(f"{key}={value!r} in {url!r}: expected an integer in {low}-{high}")
    return number


def check_name(kind: str, name: str) -> str:
    """``name`` if Pub/Sub accepts it as a topic or subscription id, else ConfigError."""
    if not _NAME.match(name) or name.lower().startswith("goog"):
        raise ConfigError(
            f"{kind} name {name!r} is not valid on Pub/Sub: 3-255 characters, starting with"
            " a letter, of letters, digits and - _ . ~ + %, not starting with 'goog'"
        )
    return name
