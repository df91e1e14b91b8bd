"""A file lands in Cloud Storage (fake-gcs-server), its OBJECT_FINALIZE notification
goes to the real Pub/Sub emulator, and the batch handler scores the file in place.

fake-gcs-server publishes notifications with the Go Pub/Sub client, which finds
the emulator through ``PUBSUB_EMULATOR_HOST``: that variable is set in the
server's own environment only. The server is started by ``tests.gcs_emulator``
with the notification flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core.exceptions import AlreadyExists, NotFound
from google.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport
from sklearn.linear_model import LogisticRegression
from tests.gcs_emulator import fake_gcs_server
from tests.pubsub_emulator import pubsub_emulator, scratch_project

from scorebus.app import App
from scorebus.brokers.pubsub import PubSubBroker
from scorebus.events import Event
from scorebus.gcp.batch_handler import (
    EVENT_TYPES,
    FAILED,
    MESSAGE_PUBLISHED,
    READY,
    batch_prediction_handler,
)
from scorebus.gcp.storage import (
    FINALIZED,
    FileRef,
    GcsStorage,
    from_cloud_event,
    from_event,
    from_notification,
)
from scorebus.models.sklearn import SklearnModel
from scorebus.runtime.batch import batch_predict
from scorebus.runtime.spec import HandlerContext
from scorebus.runtime.worker import Worker

__all__ = ["pubsub_emulator"]


class Txn(msgspec.Struct):
    id: str
    amount: float
    age: float


@dataclass
class Cloud:
    """fake-gcs-server wired to a topic on the Pub/Sub emulator, and an observer on it."""

    storage: GcsStorage
    pub: PublisherClient
    sub: SubscriberClient
    project: str
    topic: str
    bucket: Any

    def observe(self, topic: str) -> str:
        """A new subscription to ``topic`` (created too if need be)."""
        path = f"projects/{self.project}/topics/{topic}"
        with contextlib.suppress(AlreadyExists):
            self.pub.create_topic(name=path)
        name = f"projects/{self.project}/subscriptions/{topic}-{uuid.uuid4().hex[:6]}"
        self.sub.create_subscription(name=name, topic=path)
        return name

    def pull(self, subscription: str, n: int, timeout_s: float = 15.0) -> list[Any]:
        got: list[Any] = []
        give_up = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < give_up:
            r = self.sub.pull(subscription=subscription, max_messages=n, timeout=5)
            got += r.received_messages
        if got:
            self.sub.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in got])
        return [m.message for m in got]

    def notifications(self, n: int) -> list[Any]:
        return self.pull(f"projects/{self.project}/subscriptions/{self.topic}-observer", n)


@pytest.fixture
def cloud(pubsub_emulator: str, tmp_path: Path) -> Iterator[Cloud]:
    project, topic = scratch_project(pubsub_emulator), f"landing-{uuid.uuid4().hex[:8]}"
    channel = grpc.insecure_channel(pubsub_emulator)
    pub = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
    sub = SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
    pub.create_topic(name=f"projects/{project}/topics/{topic}")
    subscription = f"projects/{project}/subscriptions/{topic}-observer"
    sub.create_subscription(name=subscription, topic=f"projects/{project}/topics/{topic}")
    flags = ("-event.pubsub-project-id", project, "-event.pubsub-topic", topic)
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_emulator}
    try:
        with fake_gcs_server(tmp_path, *flags, "-event.list", "finalize", env=env) as url:
            storage = GcsStorage(endpoint=url, project=project)
            bucket = storage.client.create_bucket(f"landing-{uuid.uuid4().hex[:8]}")
            yield Cloud(
                storage=storage, pub=pub, sub=sub, project=project, topic=topic, bucket=bucket
            )
    finally:
        channel.close()


@pytest.fixture(scope="module")
def model() -> SklearnModel:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 2))
    estimator = LogisticRegression().fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
    return SklearnModel.from_estimator(
        estimator, name="tiny", version="2", features=("amount", "age")
    )


def as_broker_event(message: Any) -> Event:
    """The event scorebus's Pub/Sub broker makes of a plain notification, data decoded
    as a workflow handler without a schema receives it."""
    return Event(
        id=message.message_id,
        type=MESSAGE_PUBLISHED,
        data=json.loads(message.data) if message.data else None,
        extensions={k.lower(): v for k, v in message.attributes.items()},
    )


def run(handler: Any, event: Event) -> list[tuple[str, Event]]:
    ctx = HandlerContext(event=event, default_topic="landing")
    handler(event, ctx)
    return ctx.outgoing


CSV = "id,amount,age\na,1.5,0.5\nb,high,1\nc,-2,0.25\nd,0.5,-1.5\n"


def test_a_landed_csv_is_scored_from_its_storage_notification(
    cloud: Cloud, model: SklearnModel
) -> None:
    blob = cloud.bucket.blob("incoming/day-1.csv")
    blob.upload_from_string(CSV.encode(), content_type="text/csv")

    (message,) = cloud.notifications(1)
    ref = from_notification(message.attributes, message.data)

    assert message.attributes["eventType"] == "OBJECT_FINALIZE"
    assert message.attributes["payloadFormat"] == "JSON_API_V1"
    assert ref == FileRef(
        uri=f"gs://{cloud.bucket.name}/incoming/day-1.csv",
        size=len(CSV),
        content_type="text/csv",
        generation=blob.generation,
    )
    handler = batch_prediction_handler(
        model=model, schema=Txn, storage=cloud.storage, publish_topic="events"
    )
    outgoing = run(handler, as_broker_event(message))

    ((topic, ready),) = outgoing
    assert (topic, ready.type) == ("events", READY)
    report = ready.data
    out_uri = f"gs://{cloud.bucket.name}/incoming/day-1.predictions.csv"
    assert (report["rows"], report["scored"], report["bad"]) == (4, 3, 1)
    assert report["output_uri"] == out_uri and report["generation"] == blob.generation
    assert report["bad_rows"] == [
        {
            "row": 2,
            "line": 3,
            "id": "b",
            "reason": "schema",
            "error": report["bad_rows"][0]["error"],
        }
    ]
    assert "$.amount" in report["bad_rows"][0]["error"]
    text = cloud.bucket.blob("incoming/day-1.predictions.csv").download_as_text()
    out = list(csv.DictReader(io.StringIO(text)))
    scores = model.predict(np.array([[1.5, 0.5], [-2, 0.25], [0.5, -1.5]], dtype=np.float32))
    assert [(r["row"], r["id"]) for r in out] == [("1", "a"), ("3", "c"), ("4", "d")]
    assert [float(r["score"]) for r in out] == [float(s) for s in scores]
    errors = cloud.bucket.blob("incoming/day-1.errors.jsonl").download_as_text()
    assert [json.loads(x)["row"] for x in errors.splitlines()] == [2]

    # The outputs land in the same bucket and are announced too: the handler ignores them.
    echoes = cloud.notifications(2)
    assert sorted(m.attributes["objectId"] for m in echoes) == [
        "incoming/day-1.errors.jsonl",
        "incoming/day-1.predictions.csv",
    ]
    assert [run(handler, as_broker_event(m)) for m in echoes] == [[], []]


def test_an_eventarc_finalized_event_names_the_same_file(cloud: Cloud, model: SklearnModel) -> None:
    blob = cloud.bucket.blob("day-2.jsonl")
    blob.upload_from_string(
        b'{"id": "a", "amount": 1, "age": 1}\n', content_type="application/x-ndjson"
    )
    (message,) = cloud.notifications(1)
    resource = json.loads(message.data)
    cloud_event = Event(
        id=f"{resource['bucket']}/{resource['name']}/{resource['generation']}",
        type=FINALIZED,
        source=f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}",
        subject=f"objects/{resource['name']}",
        data=resource,
    )

    assert from_cloud_event(FINALIZED, message.data) == from_notification(
        message.attributes, message.data
    )
    assert from_event(cloud_event) == from_event(as_broker_event(message))
    assert from_cloud_event("google.cloud.storage.object.v1.deleted", resource) is None

    handler = batch_prediction_handler(model=model, schema=Txn, storage=cloud.storage)
    first = run(handler, cloud_event)
    again = run(handler, cloud_event)  # a redelivery: same outputs, same event id

    assert [e.type for _, e in first] == [READY] and first[0][1].data["scored"] == 1
    assert again[0][1].id == first[0][1].id
    assert cloud.storage.exists(f"gs://{cloud.bucket.name}/day-2.predictions.jsonl")


def test_a_file_that_cannot_be_scored_publishes_predictions_failed(
    cloud: Cloud, model: SklearnModel
) -> None:
    cloud.bucket.blob("broken.parquet").upload_from_string(b"not parquet at all")
    cloud.bucket.blob("gone.csv").upload_from_string(CSV.encode())
    messages = {m.attributes["objectId"]: m for m in cloud.notifications(2)}
    cloud.bucket.blob("gone.csv").delete()
    handler = batch_prediction_handler(model=model, storage=cloud.storage)

    ((_, broken),) = run(handler, as_broker_event(messages["broken.parquet"]))
    ((_, gone),) = run(handler, as_broker_event(messages["gone.csv"]))

    assert (broken.type, broken.data["reason"]) == (FAILED, "undecodable")
    assert "Parquet" in broken.data["error"]
    assert (gone.type, gone.data["reason"]) == (FAILED, "not_found")
    assert not cloud.storage.exists(f"gs://{cloud.bucket.name}/broken.predictions.parquet")


def test_gcs_writes_replace_the_object_only_on_a_clean_close(cloud: Cloud) -> None:
    uri = f"gs://{cloud.bucket.name}/out/result.csv"
    with pytest.raises(RuntimeError), cloud.storage.open_write(uri) as f:
        f.write(b"half")
        raise RuntimeError("crash")
    assert not cloud.storage.exists(uri)

    with cloud.storage.open_write(uri) as f:
        f.write(b"a,b\n1,2\n")
    with cloud.storage.open_read(uri) as f:
        assert f.read() == b"a,b\n1,2\n"
    assert cloud.bucket.get_blob("out/result.csv").content_type == "text/csv"
    with pytest.raises(FileNotFoundError):
        cloud.storage.open_read(f"gs://{cloud.bucket.name}/nothing.csv")


def test_the_whole_flow_through_an_app_worker_and_the_pubsub_broker(
    cloud: Cloud, model: SklearnModel, pubsub_emulator: str, tmp_path: Path
) -> None:
    events = f"events-{uuid.uuid4().hex[:8]}"
    observer = cloud.observe(events)
    app = App("files")
    handler = batch_prediction_handler(
        model=model, schema=Txn, storage=cloud.storage, publish_topic=events
    )
    app.on(*EVENT_TYPES, topic=cloud.topic, name="score_files")(handler)
    url = f"pubsub://{cloud.project}?emulator={pubsub_emulator}&dlq={tmp_path}/dlq.db"
    subscription = f"projects/{cloud.project}/subscriptions/files.score_files"

    async def scenario() -> list[Any]:
        async with PubSubBroker(url) as broker:
            worker = Worker([], app.handlers, broker=broker, store_url=f"sqlite:///{tmp_path}/r.db")
            running = asyncio.create_task(worker.run(handle_signals=False))
            while not await asyncio.to_thread(_exists, cloud.sub, subscription):
                await asyncio.sleep(0.05)
            blob = cloud.bucket.blob("in/day-3.csv")
            await asyncio.to_thread(blob.upload_from_string, CSV.encode(), content_type="text/csv")
            got = await asyncio.to_thread(cloud.pull, observer, 1, 30.0)
            # The outputs' own notifications come through too, and are ignored.
            give_up = time.monotonic() + 15
            while worker.handling[0].metrics.handled < 3 and time.monotonic() < give_up:
                await asyncio.sleep(0.05)
            count = worker.handling[0].metrics.handled
            worker.request_stop()
            await running
            return [*got, count, *await asyncio.to_thread(cloud.pull, observer, 1, 2.0)]

    message, handled_count, *more = asyncio.run(scenario())

    assert handled_count == 3 and more == []  # the file, then its two outputs: no new events

    assert message.attributes["ce-type"] == READY
    report = json.loads(message.data)
    assert (report["rows"], report["scored"], report["bad"]) == (4, 3, 1)
    assert report["output_uri"] == f"gs://{cloud.bucket.name}/in/day-3.predictions.csv"
    assert cloud.storage.exists(report["errors_uri"])


def _exists(sub: SubscriberClient, subscription: str) -> bool:
    try:
        sub.get_subscription(subscription=subscription, timeout=5)
    except NotFound:
        return False
    return True


def test_parquet_is_read_from_and_written_to_cloud_storage(
    cloud: Cloud, model: SklearnModel
) -> None:
    table = pa.table({"id": ["a", "b", "c"], "amount": [1.0, None, -1.0], "age": [0.5, 1.0, 2.0]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=2)
    cloud.bucket.blob("t.parquet").upload_from_string(sink.getvalue().to_pybytes())

    report = batch_predict(
        f"gs://{cloud.bucket.name}/t.parquet",
        model=model,
        schema=Txn,
        storage=cloud.storage,
        batch_size=2,
        out_uri=f"gs://{cloud.bucket.name}/scored/t.parquet",
    )

    assert (report.scored, [(b.row, b.reason) for b in report.bad_rows]) == (2, [(2, "schema")])
    with cloud.storage.open_read(report.output_uri) as f:
        out = pq.read_table(f).to_pylist()
    want = model.predict(np.array([[1.0, 0.5], [-1.0, 2.0]], dtype=np.float32))
    assert [(o["row"], o["id"], o["score"]) for o in out] == [
        (1, "a", float(want[0])),
        (3, "c", float(want[1])),
    ]
    assert report.errors_uri == f"gs://{cloud.bucket.name}/scored/t.errors.jsonl"
