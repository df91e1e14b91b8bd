"""MQTT (the real Mosquitto on 1883) joins the broker and worker contracts.

Every test gets its own topic prefix (``?prefix=sbtest-<uuid>``) and its own
state folder under ``tmp_path``; sessions are created with ``expiry=60`` so
Mosquitto forgets them a minute after the test. A broker built for the broker
contract purges its prefix when it closes; the retained register entries of
the prefixes handed to worker processes are deleted when the test session exits.
"""

from __future__ import annotations

import atexit
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.servers import require_server

_URLS: list[str] = []


def mqtt_url(tmp_path: Path, **options: str) -> str:
    """A URL with a fresh prefix and state folder on the local Mosquitto (skips or fails if none)."""
    port = require_server("mosquitto")
    uid = uuid.uuid4().hex[:12]
    opts = {"prefix": f"sbtest-{uid}", "state": str(tmp_path / f"mqtt-{uid}"), "expiry": "60"}
    query = "&".join(f"{k}={v}" for k, v in {**opts, **options}.items())
    return f"mqtt://127.0.0.1:{port}?{query}"


def _worker_url(tmp_path: Path) -> str:
    url = mqtt_url(tmp_path)
    _URLS.append(url)
    return url


def _clear_register(port: int, prefix: str) -> None:
    """Delete the retained register under ``prefix`` with a plain, thread-free paho client.

    Runs at exit, when executors (which aiomqtt's connect needs) no longer take work;
    the sessions themselves expire on their own (``expiry=60``).
    """
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    found: list[str] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = lambda c, ud, m: found.append(m.topic) if m.retain and m.payload else None
    client.connect("127.0.0.1", port)
    client.subscribe(f"_scorebus/{prefix}/#", qos=1)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        client.loop(0.05)
    infos = [client.publish(topic, b"", qos=1, retain=True) for topic in found]
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not all(i.is_published() for i in infos):
        client.loop(0.05)
    client.disconnect()


def _sweep() -> None:
    for url in _URLS:
        port = int(url.split("://127.0.0.1:")[1].split("?")[0])
        prefix = url.split("prefix=")[1].split("&")[0]
        try:
            _clear_register(port, prefix)
        except OSError:
            return


atexit.register(_sweep)


def _broker(tmp_path: Path) -> Any:
    from scorebus.brokers.mqtt import MqttBroker

    class ScratchMqttBroker(MqttBroker):
        async def close(self) -> None:
            try:
                await self.purge()
            finally:
                await super().close()

    return ScratchMqttBroker(mqtt_url(tmp_path))


BROKER = pytest.param(_broker, id="mqtt")
URL = pytest.param(_worker_url, id="mqtt")
