"""Building and connecting one aiomqtt client, with SDK errors translated.

A refused TCP connection, a timeout or a dead host become ``BrokerUnavailable``
naming the URL and what to check; a CONNACK that refuses (bad credentials, ACL)
becomes ``ConfigError``. MQTT 5 clients send their session expiry and Receive
Maximum; 3.1.1 clients only the clean-session flag.
"""

from __future__ import annotations

import asyncio
import select
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ...errors import BrokerUnavailable, ConfigError
from ._options import MqttOptions


def new_client(
    opts: MqttOptions,
    client_id: str,
    *,
    persistent: bool,
    manual_ack: bool,
    receive_max: int | None = None,
    will: str | None = None,
) -> aiomqtt.Client:
    """An unconnected client; ``will`` is a retained topic Mosquitto clears if the link dies."""
    kw: dict[str, Any]
    if opts.v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = opts.expiry_s if persistent else 0
        if receive_max:
            props.ReceiveMaximum = receive_max
        kw = {"clean_start": not persistent, "properties": props}
    else:
        kw = {"clean_session": not persistent}
    client = aiomqtt.Client(
        opts.host,
        opts.port,
        username=opts.username,
        password=opts.password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5 if opts.v5 else aiomqtt.ProtocolVersion.V311,
        will=aiomqtt.Will(will, b"", qos=1, retain=True) if will is not None else None,
        timeout=opts.timeout_s,
        keepalive=opts.keepalive_s,
        max_inflight_messages=0,
        max_queued_outgoing_messages=0,
        **kw,
    )
    client.pending_calls_threshold = 1 << 30  # publishes are pipelined on purpose
    client._client.manual_ack_set(manual_ack)
    return client


def read_bursts(client: aiomqtt.Client) -> None:
    """Read every packet waiting on the socket per wake-up, not one.

    aiomqtt's reader hands paho one packet per event-loop wake-up; a subscriber
    then reads slower than Mosquitto writes, and Mosquitto drops what piles up
    for a client that does not read (its queue limit applies). Reading until the
    socket is empty (up to 256 packets) keeps up at several times the rate.
    """
    p = client._client
    sock = p.socket()
    if sock is None:
        return
    fd = sock.fileno()

    def reader() -> None:
        try:
            for _ in range(256):
                p.loop_read()
                if p.socket() is None or not select.select([fd], [], [], 0)[0]:
                    break
        except Exception as exc:  # what aiomqtt's own reader does: the link is lost
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)

    loop = asyncio.get_running_loop()
    loop.remove_reader(fd)
    loop.add_reader(fd, reader)


async def connect(client: aiomqtt.Client, opts: MqttOptions) -> None:
    """Connect ``client`` (reading in bursts, see :func:`read_bursts`).

    Raises:
        ConfigError: Mosquitto refused the credentials or the client.
        BrokerUnavailable: nothing answers at the URL, or not in time.
    """
    try:
        await client.__aenter__()
    except MqttConnectError as exc:
        reason = str(exc.rc)
        hint = (
            "it does not speak MQTT 5: add protocol=3.1.1 to the URL"
            if "protocol" in reason.lower()
            else "check the user name and password in the URL and Mosquitto's ACLs"
        )
        raise ConfigError(
            f"the MQTT broker at {opts.where} refused the connection ({reason}): {hint}"
        ) from exc
    except aiomqtt.MqttError as exc:
        raise BrokerUnavailable(
            f"cannot connect to the MQTT broker at {opts.where} ({exc}):"
            " is Mosquitto running and listening on that host and port?"
        ) from exc
    read_bursts(client)
