"""Find, or start, the loopback servers that integration and contract tests need.

A missing server skips the test with the reason on a developer's machine, but
fails it under CI (``CI=true``): CI must never pass by skipping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

SERVERS = {
    "postgresql": 5432,
    "redis": 6379,
    "rabbitmq": 5672,
    "mosquitto": 1883,
    "nats": 4222,
}
_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services.sh"
_tried: set[str] = set()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def require_server(name: str) -> int:
    """The port of server ``name``, started if it is down; skip or fail if it cannot be had."""
    port = SERVERS[name]
    if port_open(port):
        return port
    if name not in _tried:
        _tried.add(name)
        subprocess.run(["bash", str(_SCRIPT)], capture_output=True, timeout=120, check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not port_open(port):
            time.sleep(0.5)
    if port_open(port):
        return port
    reason = f"{name} is not reachable on 127.0.0.1:{port} and could not be started"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing server is a failure)")
    pytest.skip(reason)
    raise AssertionError("unreachable")
