"""The connection to Redis: one client, the scripts, and the one place SDK errors
are translated.

Every command goes through :meth:`Link.call`. Before the server has answered
once, a connection error is a configuration problem and fails at once (a wrong
host or port must not hang a CLI for the retry window). After that, a lost
connection (Redis restarting, a failover, a network blip) is retried with
jittered exponential backoff for ``retry`` seconds, then raised as
:class:`~scorebus.errors.BrokerUnavailable`. Every script is safe to run twice,
so a reply lost with the connection costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ...errors import BrokerUnavailable, ConfigError
from . import _lua, _lua_broker
from ._options import Keys, RedisOptions

log = logging.getLogger(__name__)

T = TypeVar("T")

# Longest single blocking read; the socket timeout is set above it.
MAX_BLOCK_S = 1.0
_RETRYABLE = (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, OSError)
_SCRIPTS = {
    **{name: getattr(_lua, name) for name in ("PULL", "ACK", "LEASE", "DEAD")},
    **{
        name: getattr(_lua_broker, name)
        for name in ("SUBSCRIBE", "PUBLISH", "STATS", "REPLAY", "TIDY")
    },
}


_LEN = struct.Struct(">I")


def frame(values: Iterable[bytes | str | int]) -> bytes:
    """Many script arguments as one: each value as a 4-byte length and its bytes."""
    raws = [
        v if type(v) is bytes else v.encode() if type(v) is str else str(v).encode() for v in values
    ]
    return b"".join([_LEN.pack(len(r)) + r for r in raws])


def is_nogroup(exc: BaseException) -> bool:
    """A consumer group or stream that vanished (Redis restarted without persistence)."""
    return isinstance(exc, rx.ResponseError) and str(exc).startswith("NOGROUP")


class Link:
    """One Redis client with retry and error translation (see the module docstring)."""

    def __init__(self, opts: RedisOptions) -> None:
        self.opts = opts
        self.keys = Keys(opts.prefix)
        # Typed loosely on purpose: redis-py types replies as ``bytes | str`` unions
        # (it depends on decode_responses); with decode_responses=False they are bytes.
        self.client: Any = aioredis.Redis(
            host=opts.host,
            port=opts.port,
            db=opts.db,
            username=opts.username,
            password=opts.password,
            ssl=opts.tls,
            socket_connect_timeout=opts.timeout_s,
            socket_timeout=opts.timeout_s + MAX_BLOCK_S,
            # One retry policy, ours: redis-py's own would delay the first failure.
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        self._scripts = {name: self.client.register_script(src) for name, src in _SCRIPTS.items()}
        self._reached = False

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Any], what: str) -> Any:
        """Run Lua script ``name`` (reloaded by redis-py after a server restart)."""
        run = self._scripts[name]
        return await self.call(what, lambda: run(keys=keys, args=args))

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()``, retried on a lost connection; ``what`` names it in errors.

        Raises:
            ConfigError: the server refused the credentials or the permission.
            BrokerUnavailable: never reached the server, or lost it for ``retry`` seconds.
        """
        where = self.opts.where
        give_up: float | None = None
        pause = 0.05
        while True:
            try:
                result = await fn()
            except (rx.AuthenticationError, rx.AuthorizationError, rx.NoPermissionError) as exc:
                raise ConfigError(
                    f"Redis at {where} refused {what}: {exc}; check the user and password in "
                    "the URL and the user's ACL"
                ) from exc
            except _RETRYABLE as exc:
                if not self._reached:
                    tls = "; ?tls=1 if the server wants TLS" if not self.opts.tls else ""
                    raise BrokerUnavailable(
                        f"cannot reach Redis at {where} ({exc}): check that redis-server is "
                        f"running there and the URL's host and port{tls}"
                    ) from exc
                now = time.monotonic()
                if give_up is None:
                    give_up = now + self.opts.retry_s
                    log.warning("lost Redis at %s during %s: %s; reconnecting", where, what, exc)
                if now >= give_up:
                    raise BrokerUnavailable(
                        f"lost Redis at {where} during {what} and could not reconnect within "
                        f"{self.opts.retry_s:g} s: {exc}"
                    ) from exc
                await asyncio.sleep(min(pause, give_up - now) * random.uniform(0.5, 1.0))
                pause = min(pause * 2, 2.0)
                continue
            if give_up is not None:
                log.warning("reconnected to Redis at %s", where)
            self._reached = True
            return result

    async def close(self) -> None:
        await self.client.aclose()
