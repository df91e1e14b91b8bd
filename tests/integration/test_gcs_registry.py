"""What only the Cloud Storage registry does: object layout, version claims, the
download cache, object locks and its errors, against fake-gcs-server.

The behaviour it shares with the local registry is in
``tests/contract/test_registry_contract.py``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from sklearn.linear_model import LogisticRegression
from tests.gcs_emulator import gcs_emulator

from scorebus.errors import ConfigError, TransientError
from scorebus.models import open_registry
from scorebus.models.registry_gcs import GcsRegistry

__all__ = ["gcs_emulator"]


@pytest.fixture(scope="module")
def estimator() -> Any:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3))
    return LogisticRegression().fit(x, (x.sum(axis=1) > 0).astype(int))


@pytest.fixture
def client(gcs_emulator: str) -> storage.Client:
    """A client given the emulator explicitly (no STORAGE_EMULATOR_HOST)."""
    return storage.Client(
        project="scorebus-test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_emulator},
    )


@pytest.fixture
def bucket(client: storage.Client) -> Iterator[Any]:
    yield client.create_bucket(f"registry-{uuid.uuid4().hex[:12]}")


def _registry(gcs_emulator: str, bucket: Any, tmp_path: Path, **options: Any) -> GcsRegistry:
    registry = open_registry(
        f"gs://{bucket.name}/ml/", endpoint=gcs_emulator, cache_dir=tmp_path / "cache", **options
    )
    assert isinstance(registry, GcsRegistry)
    return registry


def test_objects_follow_the_documented_layout(
    gcs_emulator: str, bucket: Any, tmp_path: Path, estimator: Any
) -> None:
    registry = _registry(gcs_emulator, bucket, tmp_path)
    mv = registry.register("fraud", estimator, alias="champion")
    assert registry.location == f"gs://{bucket.name}/ml"
    assert mv.path == f"gs://{bucket.name}/ml/fraud/1"
    assert sorted(b.name for b in bucket.list_blobs()) == [
        "ml/fraud/1/.reserved",
        "ml/fraud/1/meta.json",
        "ml/fraud/1/model.skops",
        "ml/fraud/aliases.json",
    ]
    meta = bucket.blob("ml/fraud/1/meta.json").download_as_bytes()
    assert b'"path"' not in meta and b'"version":"1"' in meta


def test_a_claimed_number_is_skipped_and_an_unfinished_version_is_not_listed(
    gcs_emulator: str, bucket: Any, tmp_path: Path, estimator: Any
) -> None:
    registry = _registry(gcs_emulator, bucket, tmp_path)
    # Another writer claimed 1 and 2 but has not written meta.json (or crashed).
    for version in ("1", "2"):
        bucket.blob(f"ml/m/{version}/.reserved").upload_from_string(b"")
    assert registry.names() == [] and registry.versions("m") == []
    assert registry.register("m", estimator).version == "3"
    assert registry.versions("m") == ["3"] and registry.names() == ["m"]


def test_a_loaded_version_is_cached_and_reused(
    gcs_emulator: str, bucket: Any, tmp_path: Path, estimator: Any
) -> None:
    registry = _registry(gcs_emulator, bucket, tmp_path)
    registry.register("m", estimator, alias="champion")
    local = registry.fetch("m")
    assert local.path.startswith(str(tmp_path / "cache" / bucket.name))
    assert local.path.endswith("/m/1") and local.file_path.read_bytes() == (
        bucket.blob("ml/m/1/model.skops").download_as_bytes()
    )

    # Versions never change: a second process finds the copy and downloads nothing.
    bucket.blob("ml/m/1/model.skops").delete()
    again = _registry(gcs_emulator, bucket, tmp_path)
    model = again.load("m@champion")
    assert (model.name, model.version) == ("m", "1")
    x = np.ones((2, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), estimator.predict_proba(x)[:, 1], rtol=1e-6)

    # A copy whose meta.json differs (the bucket was rebuilt) is fetched again.
    Path(local.path, "meta.json").write_bytes(b"{}")
    with pytest.raises(ConfigError, match=r"ml/m/1/model\.skops is missing"):
        _registry(gcs_emulator, bucket, tmp_path).fetch("m@1")


def test_the_lock_excludes_other_holders_and_breaks_when_stale(
    gcs_emulator: str, bucket: Any, tmp_path: Path
) -> None:
    holder = _registry(gcs_emulator, bucket, tmp_path)
    waiter = _registry(gcs_emulator, bucket, tmp_path, lock_timeout_s=0.3)
    with holder.lock("train-fraud"):
        assert [b.name for b in bucket.list_blobs(prefix="ml/.locks/")] == [
            "ml/.locks/train-fraud.lock"
        ]
        with pytest.raises(TransientError, match="still held"), waiter.lock("train-fraud"):
            pass
        with waiter.lock("other-key"):
            pass
    with waiter.lock("train-fraud"):
        pass
    assert list(bucket.list_blobs(prefix="ml/.locks/")) == []

    entered = threading.Event()
    release = threading.Event()

    def crashed_holder() -> None:
        with holder.lock("stale"):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=crashed_holder)
    thread.start()
    try:
        assert entered.wait(10)
        time.sleep(1.1)  # older than stale_lock_s below
        breaker = _registry(gcs_emulator, bucket, tmp_path, lock_timeout_s=10, stale_lock_s=1)
        with breaker.lock("stale"):
            pass
    finally:
        release.set()
        thread.join()


def test_storage_errors_are_one_line_config_errors(
    gcs_emulator: str, client: storage.Client, tmp_path: Path
) -> None:
    missing = open_registry(f"gs://no-such-{uuid.uuid4().hex[:8]}/ml", client=client)
    with pytest.raises(ConfigError, match=r"bucket 'no-such-.*' not found"):
        missing.resolve("fraud")
