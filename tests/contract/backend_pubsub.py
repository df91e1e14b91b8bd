"""Google Cloud Pub/Sub, on the emulator the tests start once per session.

Each test gets its own project on the emulator and its own dead-letter store
file, so listings never see another test's topics or letters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.pubsub_emulator import emulator_host, scratch_project

from scorebus.brokers import Broker


def pubsub_url(tmp_path: Path) -> str:
    host = emulator_host()
    return f"pubsub://{scratch_project(host)}?emulator={host}&dlq={tmp_path}/pubsub-dlq.db"


def _broker(tmp_path: Path) -> Broker:
    from scorebus.brokers.pubsub import PubSubBroker

    return PubSubBroker(pubsub_url(tmp_path))


BROKER = pytest.param(_broker, id="pubsub")
URL = pytest.param(pubsub_url, id="pubsub")
