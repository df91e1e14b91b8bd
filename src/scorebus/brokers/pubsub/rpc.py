"""gRPC plumbing for the Pub/Sub broker: channels, raw stubs, errors translated.

The hot path (publish, pull, acknowledge, modify ack deadline) calls the gRPC
methods with plain protobuf messages rather than through the generated GAPIC
clients: wrapping 1,000 received messages per pull in proto-plus objects costs
more than the RPC itself (against the emulator: about 28,000 msg/s through the
GAPIC client in a thread, 45,000-65,000 msg/s raw).

Those calls run on a ``grpc.aio`` channel, opened on first use in the running
event loop, so no thread sits in a long poll and an outstanding pull can be
cancelled at close. gRPC's futures on a plain channel, bridged to asyncio, cost
about twice the CPU per message and far more time per call in a busy worker:
that channel hands each completion from a polling thread (started afresh
whenever no call is in flight) to the event loop, and each hand-over waits for
the GIL held by the scoring threads. The administrative calls (:mod:`.admin`)
use the GAPIC clients on a plain channel, in threads.

Every gRPC or ``google.api_core`` error becomes a scorebus error here, once:
``NOT_FOUND`` and bad arguments or credentials are a :class:`ConfigError`,
anything that may heal (unreachable, deadline, overload) is
:class:`BrokerUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

import grpc
from google.api_core import exceptions as gexc
from google.api_core import grpc_helpers, grpc_helpers_async
from google.auth import exceptions as auth_exc
from google.protobuf import empty_pb2
from google.pubsub_v1.types import pubsub as T

from ...errors import BrokerUnavailable, ConfigError, ScorebusError
from .options import PubSubOptions

PubsubMessage = T.PubsubMessage.pb()
PublishRequest = T.PublishRequest.pb()
PullRequest = T.PullRequest.pb()
AcknowledgeRequest = T.AcknowledgeRequest.pb()
ModifyAckDeadlineRequest = T.ModifyAckDeadlineRequest.pb()

Method = Literal["publish", "pull", "acknowledge", "modify_ack_deadline"]
_METHODS: dict[str, tuple[str, Any, Any]] = {
    "publish": ("Publisher/Publish", PublishRequest, T.PublishResponse.pb()),
    "pull": ("Subscriber/Pull", PullRequest, T.PullResponse.pb()),
    "acknowledge": ("Subscriber/Acknowledge", AcknowledgeRequest, empty_pb2.Empty),
    "modify_ack_deadline": (
        "Subscriber/ModifyAckDeadline",
        ModifyAckDeadlineRequest,
        empty_pb2.Empty,
    ),
}
_SCOPES = ("https://www.googleapis.com/auth/pubsub",)
_HOST = "pubsub.googleapis.com"
# Pull responses of 1,000 messages of up to 10 MB each must not hit gRPC's 4 MB default.
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
_CONFIG_CODES = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNIMPLEMENTED,
}
_AUTH_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


class _Stubs:
    """The hot-path methods on one ``grpc.aio`` channel, which belongs to one event loop."""

    def __init__(self, opts: PubSubOptions, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.channel = _open_aio_channel(opts)
        self.methods = {
            name: self.channel.unary_unary(
                f"/google.pubsub.v1.{path}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            for name, (path, request, response) in _METHODS.items()
        }


class Rpc:
    """The channels and the four hot-path methods for one ``pubsub://`` URL."""

    def __init__(self, opts: PubSubOptions) -> None:
        self.opts = opts
        self.channel = open_channel(opts)  # plain: the GAPIC clients of .admin
        self._stubs: _Stubs | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def _current(self) -> _Stubs:
        if self._closed:
            raise BrokerUnavailable(f"{self.opts.where}: this broker is closed")
        loop = asyncio.get_running_loop()
        if self._stubs is None or self._stubs.loop is not loop:
            # An aio channel cannot outlive its loop: a broker reused in a new loop reopens it.
            self._stubs = _Stubs(self.opts, loop)
        return self._stubs

    async def call(
        self,
        method: Method,
        request: Any,
        *,
        timeout: float,
        what: str,
        empty_on_deadline: bool = False,
    ) -> Any:
        """Run one RPC; returns its response (``None`` for a pull that timed out empty).

        Raises:
            ConfigError: not found, invalid, or not allowed (names ``what``).
            BrokerUnavailable: the server cannot be reached or is overloaded.
        """
        sent = self.send(method, request, timeout=timeout)
        return await self.result(sent, what=what, empty_on_deadline=empty_on_deadline)

    def send(self, method: Method, request: Any, *, timeout: float) -> Any:
        """Start one RPC; await it through :meth:`result`, or ``cancel()`` it."""
        return self._current().methods[method](request, timeout=timeout)

    async def result(self, sent: Any, *, what: str, empty_on_deadline: bool = False) -> Any:
        """The response of a call from :meth:`send`, its error translated (see :meth:`call`)."""
        try:
            return await sent
        except grpc.RpcError as exc:
            if empty_on_deadline and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return None
            raise translate(exc, self.opts, what) from exc

    async def aclose(self) -> None:
        """Close both channels; calls in flight end as cancelled."""
        self._closed = True
        stubs, self._stubs = self._stubs, None
        self.channel.close()
        if stubs is not None and stubs.loop is asyncio.get_running_loop():
            await stubs.channel.close()

    def close(self) -> None:
        """Close both channels without waiting: called in the aio channel's loop, that
        channel closes (cancelling its calls) at the loop's next turn."""
        self._closed = True
        stubs, self._stubs = self._stubs, None
        self.channel.close()
        with contextlib.suppress(RuntimeError):  # no loop running here
            if stubs is not None and asyncio.get_running_loop() is stubs.loop:
                task = stubs.loop.create_task(stubs.channel.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)


def open_channel(opts: PubSubOptions) -> grpc.Channel:
    """A plain channel to the emulator, or an authenticated one to Google Cloud.

    Raises:
        ConfigError: no Application Default Credentials were found.
    """
    if opts.emulator:
        return grpc.insecure_channel(opts.emulator, options=_CHANNEL_OPTIONS)
    try:
        channel: grpc.Channel = grpc_helpers.create_channel(
            opts.endpoint, default_scopes=_SCOPES, default_host=_HOST, options=_CHANNEL_OPTIONS
        )
    except auth_exc.DefaultCredentialsError as exc:
        raise _no_credentials(opts) from exc
    return channel


def _open_aio_channel(opts: PubSubOptions) -> grpc.aio.Channel:
    if opts.emulator:
        return grpc.aio.insecure_channel(opts.emulator, options=_CHANNEL_OPTIONS)
    try:
        channel: grpc.aio.Channel = grpc_helpers_async.create_channel(
            opts.endpoint, default_scopes=_SCOPES, default_host=_HOST, options=_CHANNEL_OPTIONS
        )
    except auth_exc.DefaultCredentialsError as exc:
        raise _no_credentials(opts) from exc
    return channel


def _no_credentials(opts: PubSubOptions) -> ConfigError:
    return ConfigError(
        f"pubsub://{opts.project}: no Google Cloud credentials found; run"
        " `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS,"
        " or use the emulator with ?emulator=HOST:PORT"
    )


def translate(exc: BaseException, opts: PubSubOptions, what: str) -> ScorebusError:
    """The scorebus error for a gRPC / ``google.api_core`` error, as one line."""
    code: grpc.StatusCode | None
    if isinstance(exc, gexc.GoogleAPICallError):
        code, detail = exc.grpc_status_code, exc.message
    elif isinstance(exc, grpc.RpcError):
        code, detail = exc.code(), exc.details()
    else:
        code, detail = None, str(exc)
    detail = " ".join(str(detail or "").split())[:300]
    if code == grpc.StatusCode.NOT_FOUND:
        return ConfigError(f"{what}: not found on {opts.where} ({detail})")
    if code in _AUTH_CODES:
        return ConfigError(
            f"{what}: {opts.where} refused the credentials ({detail}); check the account's"
            " Pub/Sub roles, or use the emulator with ?emulator=HOST:PORT"
        )
    if code in _CONFIG_CODES:
        return ConfigError(f"{what}: {opts.where} rejected the request ({detail})")
    hint = (
        "is the emulator running? start it or fix ?emulator=HOST:PORT"
        if opts.emulator
        else "check the network, ?endpoint= and credentials, or set ?emulator=HOST:PORT"
    )
    name = code.name if code is not None else type(exc).__name__
    return BrokerUnavailable(f"{what}: {opts.where} unavailable ({name}: {detail}); {hint}")
