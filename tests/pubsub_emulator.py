"""Find or start the Google Cloud Pub/Sub emulator for the tests.

``emulator_host()`` returns ``HOST:PORT`` of a running emulator, once per test
session: ``PUBSUB_EMULATOR_HOST`` if it is set and answers, otherwise an
emulator started here from the Cloud SDK (``platform/pubsub-emulator``'s
launcher, Java 17) on a free loopback port, in a temporary folder. Only the
process group started here is stopped, at exit. Where no emulator can be had
the test is skipped with the reason, or failed under ``CI=true``.

``pubsub_emulator`` is the same as a session fixture for integration tests.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_LAUNCHER = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
_START_TIMEOUT_S = 60.0
_state: dict[str, str] = {}


def _reachable(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


def find_launcher() -> Path | None:
    """The emulator's launcher in the Cloud SDK, or None."""
    roots = [os.environ.get("CLOUDSDK_ROOT_DIR", "")]
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(str(Path(gcloud).resolve().parent.parent))
    roots += ["/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "~/google-cloud-sdk"]
    for root in filter(None, roots):
        launcher = Path(root).expanduser() / _LAUNCHER
        if launcher.is_file():
            return launcher
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing server is a failure)")
    pytest.skip(reason)


def _start(launcher: Path) -> str:
    folder = Path(tempfile.mkdtemp(prefix="scorebus-pubsub-emulator-"))
    port = _free_port()
    log = (folder / "emulator.log").open("wb")
    proc = subprocess.Popen(
        [str(launcher), "--host=127.0.0.1", f"--port={port}"],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stop the JVM and its launcher
    )

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _reachable(host) and b"Server started" in (folder / "emulator.log").read_bytes():
            return host
        time.sleep(0.1)
    output = (folder / "emulator.log").read_bytes()[-500:].decode(errors="replace")
    stop()
    atexit.unregister(stop)
    raise RuntimeError(f"the Pub/Sub emulator did not start on {host}: {output}")


def emulator_host() -> str:
    """``HOST:PORT`` of a Pub/Sub emulator for this session (skip or fail if none)."""
    if "host" in _state:
        return _state["host"]
    if "error" in _state:
        _unavailable(_state["error"])
    given = os.environ.get("PUBSUB_EMULATOR_HOST")
    if given and _reachable(given):
        _state["host"] = given
        return given
    launcher = find_launcher()
    if launcher is None or shutil.which("java") is None:
        _state["error"] = (
            "the Pub/Sub emulator is not installed (Cloud SDK component pubsub-emulator"
            " and Java) and PUBSUB_EMULATOR_HOST is not set"
        )
    else:
        try:
            _state["host"] = _state["started"] = _start(launcher)
            return _state["host"]
        except (OSError, RuntimeError) as exc:
            _state["error"] = str(exc)
    _unavailable(_state["error"])
    raise AssertionError("unreachable")


def scratch_project(host: str) -> str:
    """A fresh project id on the emulator, emptied at exit if the emulator is not ours.

    The emulator accepts any project, so each test gets its own and never sees
    another's topics; an emulator started here is discarded whole at exit.
    """
    project = f"scorebus-{uuid.uuid4().hex[:12]}"
    if _state.get("started") != host:
        atexit.register(_empty_project, host, project)
    return project


def _empty_project(host: str, project: str) -> None:
    import grpc
    from google.pubsub_v1 import PublisherClient, SubscriberClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    with contextlib.suppress(Exception), grpc.insecure_channel(host) as channel:
        pub = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        sub = SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
        for s in sub.list_subscriptions(project=f"projects/{project}", timeout=10):
            sub.delete_subscription(subscription=s.name, timeout=10)
        for t in pub.list_topics(project=f"projects/{project}", timeout=10):
            pub.delete_topic(topic=t.name, timeout=10)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """The emulator's ``HOST:PORT`` (stopped at the end of the session if started here)."""
    yield emulator_host()
