"""The contract every model registry passes, on disk and on Cloud Storage (fake-gcs-server).

The same behaviour is asked of both: metadata round trips, references, aliases,
promotion and rollback, errors that name what exists, distinct versions under
concurrent writers, and a loaded model that predicts. Add a backend by adding a
``pytest.param`` to ``BACKENDS``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from tests.gcs_emulator import gcs_emulator

from scorebus.errors import ConfigError
from scorebus.models import ModelRef, ModelRegistry, ModelVersion, Registry, open_registry

__all__ = ["gcs_emulator"]

FEATURES = ("amount", "age")


@pytest.fixture(scope="module")
def estimator() -> Any:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 2))
    return LogisticRegression(C=0.5).fit(x, (x[:, 0] - x[:, 1] > 0).astype(int))


def _local(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    return Registry(tmp_path / "registry")


def _gcs(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    url = request.getfixturevalue("gcs_emulator")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    # The client reads STORAGE_EMULATOR_HOST itself, as it would on a developer's machine.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    from google.cloud import storage

    bucket = storage.Client().create_bucket(f"registry-{uuid.uuid4().hex[:12]}")
    return open_registry(f"gs://{bucket.name}/teams/ml", cache_dir=tmp_path / "cache")


BACKENDS = [pytest.param(_local, id="local"), pytest.param(_gcs, id="gcs")]


@pytest.fixture(params=BACKENDS)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelRegistry]:
    build: Callable[[pytest.FixtureRequest, Path], ModelRegistry] = request.param
    yield build(request, tmp_path)


def test_a_version_keeps_every_metadata_field(
    registry: ModelRegistry, estimator: Any, tmp_path: Path
) -> None:
    mv = registry.register(
        "fraud",
        estimator,
        features=FEATURES,
        metrics={"auc": 0.91, "logloss": np.float64(0.3)},
        training_data={"uri": "gs://data/train.parquet", "rows": 300},
        alias="champion",
    )
    assert isinstance(mv, ModelVersion)
    assert (mv.name, mv.version, mv.flavour, mv.file) == ("fraud", "1", "sklearn", "model.skops")
    assert mv.features == FEATURES and mv.outputs == ("score",)
    assert mv.metrics == {"auc": 0.91, "logloss": 0.3}
    assert mv.params["C"] == 0.5 and mv.training_data == {
        "uri": "gs://data/train.parquet",
        "rows": 300,
    }
    assert mv.created_at.endswith("+00:00")
    assert registry.get("fraud", 1) == mv == registry.resolve("fraud")
    assert registry.names() == ["fraud"] and registry.versions("fraud") == ["1"]

    sio.dump(estimator, tmp_path / "exported.skops")
    file_version = registry.register(
        "fraud", tmp_path / "exported.skops", features=FEATURES, training_data="s3-export"
    )
    assert (file_version.version, file_version.params) == ("2", {})
    assert registry.get("fraud", "2").training_data == "s3-export"


def test_references_resolve_to_versions(registry: ModelRegistry, estimator: Any) -> None:
    for _ in range(3):
        registry.register("m", estimator)
    assert registry.resolve("m").version == "3"  # no champion: the latest
    registry.promote("m", 1)
    assert registry.resolve("m").version == "1"  # the champion
    assert registry.resolve("m@latest").version == "3"
    assert registry.resolve("m@2").version == "2"
    assert registry.resolve(ModelRef("m", "champion")).version == "1"
    registry.set_alias("m", "challenger", "3")
    assert registry.resolve("m@challenger").version == "3"
    assert registry.aliases("m") == {"champion": "1", "challenger": "3"}


def test_promote_and_rollback_walk_the_alias_history(
    registry: ModelRegistry, estimator: Any
) -> None:
    for _ in range(3):
        registry.register("m", estimator)
    registry.promote("m", "1")
    registry.promote("m", "2")
    registry.promote("m", "2")  # no change: not a history entry
    registry.promote("m", "3")
    state = registry.alias_state("m")
    assert state.aliases == {"champion": "3"} and state.history == {"champion": ["1", "2"]}
    assert registry.rollback("m").version == "2"
    assert registry.rollback("m").version == "1"
    assert registry.resolve("m").version == "1"
    with pytest.raises(ConfigError, match="no earlier version"):
        registry.rollback("m")
    assert registry.aliases("m") == {"champion": "1"}


def test_unknown_names_versions_and_aliases_say_what_exists(
    registry: ModelRegistry, estimator: Any
) -> None:
    with pytest.raises(ConfigError, match="empty"):
        registry.resolve("fraud")
    registry.register("fraud", estimator, alias="champion")
    registry.register("churn", estimator)
    with pytest.raises(ConfigError, match=r"unknown model 'frod'.*churn, fraud"):
        registry.resolve("frod")
    with pytest.raises(ConfigError, match="no version '7'; versions: 1"):
        registry.resolve("fraud@7")
    with pytest.raises(ConfigError, match="no alias 'canary'; aliases: champion; versions: 1"):
        registry.resolve("fraud@canary")
    with pytest.raises(ConfigError, match="'fraud' has no version '9'; versions: 1"):
        registry.promote("fraud", "9")
    with pytest.raises(ConfigError, match=r"unknown model 'nope'.*churn, fraud"):
        registry.promote("nope", "1")
    with pytest.raises(ConfigError, match=r"unknown model 'nope'.*churn, fraud"):
        registry.rollback("nope")
    with pytest.raises(ConfigError, match="no alias 'canary'; aliases: champion"):
        registry.rollback("fraud", "canary")
    with pytest.raises(ConfigError, match="alias"):
        registry.set_alias("fraud", "latest", "1")
    assert registry.aliases("fraud") == {"champion": "1"}


def test_concurrent_registers_get_distinct_versions(
    registry: ModelRegistry, estimator: Any
) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def register() -> None:
        try:
            results.append(registry.register("m", estimator).version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results, key=int) == ["1", "2", "3", "4"] == registry.versions("m")


def test_concurrent_alias_changes_are_all_kept(registry: ModelRegistry, estimator: Any) -> None:
    registry.register("m", estimator)
    aliases = [f"team{i}" for i in range(6)]
    threads = [threading.Thread(target=registry.set_alias, args=("m", a, "1")) for a in aliases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.aliases("m") == dict.fromkeys(aliases, "1")


def test_a_loaded_version_predicts(registry: ModelRegistry, estimator: Any) -> None:
    registry.register("m", estimator, features=FEATURES, alias="champion")
    x = np.random.default_rng(9).normal(size=(16, 2)).astype(np.float32)
    model = registry.load("m@champion")
    assert (model.name, model.version, model.signature.inputs) == ("m", "1", FEATURES)
    expected = estimator.predict_proba(x)[:, 1].astype(np.float32)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6)
    local = registry.fetch("m@1")
    assert local.file_path.is_file() and (Path(local.path) / "meta.json").is_file()
    assert registry.fetch(local) == local
