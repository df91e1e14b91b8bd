"""The ``redis://`` URL: where the server is, and the options in its query string.

    redis://[USER:PASSWORD@]HOST[:PORT][/DB][?OPTION=VALUE&...]

Options (all optional):

    prefix=scorebus   every key this broker touches starts with ``PREFIX:``
    dedupe=120        seconds an event id is remembered per topic (0: off)
    maxlen=0          cap each topic stream at about this many entries (0: no cap)
    trim=1            drop topic entries that every subscription has acked (0: keep)
    retry=30          seconds to keep retrying a lost connection before giving up
    timeout=5         seconds to connect and to wait for a reply
    tls=0             1: connect with TLS (``rediss``)
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from ...errors import ConfigError

_DEFAULTS = {
    "prefix": "scorebus",
    "dedupe": "120",
    "maxlen": "0",
    "trim": "1",
    "retry": "30",
    "timeout": "5",
    "tls": "0",
}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True, kw_only=True)
class RedisOptions:
    """A parsed ``redis://`` URL; ``where`` is the URL without password or options."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    prefix: str
    dedupe_s: float
    maxlen: int
    trim: bool
    retry_s: float
    timeout_s: float
    tls: bool

    @property
    def where(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


def parse_url(url: str) -> RedisOptions:
    """The options of ``url``.

    Raises:
        ConfigError: not a ``redis://`` URL, a bad port or DB, an unknown option
            or a value of the wrong kind (the message names the valid options).
    """
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ConfigError(f"bad Redis URL {url!r}: expected redis://[user:pass@]host[:port][/db]")
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {url!r}: the port is not a number") from exc
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(f"bad Redis URL {url!r}: the path must be a database number, e.g. /0")
    given = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(given) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r} in Redis URL {url!r}: valid options are "
            + ", ".join(sorted(_DEFAULTS))
        )
    opts = {**_DEFAULTS, **given}
    if not opts["prefix"]:
        raise ConfigError(f"Redis URL {url!r}: prefix must not be empty")
    return RedisOptions(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        prefix=opts["prefix"],
        dedupe_s=_number(url, opts, "dedupe"),
        maxlen=int(_number(url, opts, "maxlen")),
        trim=_flag(url, opts, "trim"),
        retry_s=_number(url, opts, "retry"),
        timeout_s=_number(url, opts, "timeout") or 5.0,
        tls=_flag(url, opts, "tls"),
    )


def _number(url: str, opts: dict[str, str], name: str) -> float:
    try:
        value = float(opts[name])
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigError(f"Redis URL {url!r}: {name}={opts[name]!r} must be a number >= 0")
    return value


def _flag(url: str, opts: dict[str, str], name: str) -> bool:
    value = opts[name].lower()
    if value not in _TRUE | _FALSE:
        raise ConfigError(f"Redis URL {url!r}: {name}={opts[name]!r} must be 1 or 0")
    return value in _TRUE


class Keys:
    """Names of the Redis keys under one prefix (see the package docstring)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.subs = f"{prefix}:subs"
        self.topics = f"{prefix}:topics"
        self.dlq_seq = f"{prefix}:dlq-seq"
        self.dlq_index = f"{prefix}:dlq-index"

    def topic(self, topic: str) -> str:
        return f"{self.prefix}:topic:{topic}"

    def seen(self, topic: str, event_id: str) -> str:
        return f"{self.prefix}:seen:{topic}:{event_id}"

    def sub(self, name: str) -> str:
        return f"{self.prefix}:sub:{name}"

    def replay(self, name: str) -> str:
        return f"{self.prefix}:replay:{name}"

    def lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    def dlq(self, name: str) -> str:
        return f"{self.prefix}:dlq:{name}"

    def replayed(self, name: str) -> str:
        return f"{self.prefix}:replayed:{name}"
