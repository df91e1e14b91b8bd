"""Registry: versions, resolution, aliases, promotion, rollback and errors."""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio

from scorebus.errors import ConfigError, ModelLoadError
from scorebus.models import FEATURES, ModelRef, ModelVersion, Registry


def test_register_estimator_writes_layout(tmp_path: Path, hgb: Any) -> None:
    registry = Registry(tmp_path / "reg")
    mv = registry.register(
        "fraud", hgb, features=FEATURES, metrics={"auc": 0.9}, training_data={"rows": 3000}
    )
    assert isinstance(mv, ModelVersion)
    assert (mv.name, mv.version, mv.flavour, mv.file) == ("fraud", "1", "sklearn", "model.skops")
    assert mv.features == FEATURES and mv.outputs == ("score",)
    assert mv.params["max_iter"] == 15 and mv.metrics == {"auc": 0.9}
    meta = json.loads((tmp_path / "reg/fraud/1/meta.json").read_text())
    assert set(meta) == {
        "name", "version", "flavour", "file", "features", "outputs",
        "metrics", "params", "training_data", "created_at",
    }  # fmt: skip
    assert mv.file_path.is_file()
    assert not list((tmp_path / "reg").rglob("*.tmp"))
    assert registry.get("fraud", 1) == mv


def test_versions_aliases_promote_rollback(tmp_path: Path, hgb: Any) -> None:
    registry = Registry(tmp_path)
    for _ in range(3):
        registry.register("fraud", hgb)
    assert registry.names() == ["fraud"] and registry.versions("fraud") == ["1", "2", "3"]
    assert registry.resolve("fraud").version == "3"  # no champion: latest
    registry.promote("fraud", 1)
    assert registry.resolve("fraud").version == "1"
    assert registry.resolve("fraud@latest").version == "3"
    assert registry.resolve(ModelRef("fraud", "2")).version == "2"
    registry.promote("fraud", "2")
    registry.set_alias("fraud", "challenger", "3")
    assert registry.aliases("fraud") == {"champion": "2", "challenger": "3"}
    assert registry.resolve("fraud@champion").version == "2"
    assert registry.rollback("fraud").version == "1"
    assert registry.resolve("fraud").version == "1"
    with pytest.raises(ConfigError, match="no earlier version"):
        registry.rollback("fraud")


def test_register_with_alias(tmp_path: Path, hgb: Any) -> None:
    registry = Registry(tmp_path)
    registry.register("m", hgb, alias="champion")
    registry.register("m", hgb)
    assert registry.resolve("m").version == "1"


def test_unknown_references_list_what_exists(tmp_path: Path, hgb: Any) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(ConfigError, match="empty"):
        registry.resolve("fraud")
    registry.register("fraud", hgb, alias="champion")
    registry.register("churn", hgb)
    with pytest.raises(ConfigError, match=r"unknown model 'frod'.*churn, fraud"):
        registry.resolve("frod")
    with pytest.raises(ConfigError, match="no version '7'; versions: 1"):
        registry.resolve("fraud@7")
    with pytest.raises(ConfigError, match="no alias 'canary'; aliases: champion; versions: 1"):
        registry.resolve("fraud@canary")
    with pytest.raises(ConfigError, match="no version"):
        registry.promote("fraud", "9")
    with pytest.raises(ConfigError):
        registry.resolve("@1")


def test_bad_names_and_aliases(tmp_path: Path, hgb: Any) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(ConfigError, match="model name"):
        registry.register("../escape", hgb)
    registry.register("m", hgb)
    for alias in ("3", "latest", "a/b"):
        with pytest.raises(ConfigError, match="alias"):
            registry.set_alias("m", alias, "1")
    with pytest.raises(ConfigError, match="cannot register"):
        registry.register("m", object())


def test_register_files_and_load(tmp_path: Path, hgb: Any, data: Any) -> None:
    registry = Registry(tmp_path / "reg")
    x = data[0][:16]
    expected = hgb.predict_proba(x)[:, 1].astype(np.float32)
    sio.dump(hgb, tmp_path / "m.skops")
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(hgb))
    skops_version = registry.register("m", tmp_path / "m.skops", features=FEATURES)
    pickle_version = registry.register("m", str(tmp_path / "m.pkl"), features=FEATURES)
    assert skops_version.features == FEATURES and pickle_version.file == "model.pkl"
    model = registry.load("m@1")
    assert (model.name, model.version, model.signature.inputs) == ("m", "1", FEATURES)
    np.testing.assert_array_equal(model.predict(x), expected)
    with pytest.raises(ModelLoadError, match="arbitrary code"):
        registry.load("m@2")
    np.testing.assert_array_equal(registry.load("m@2", trust=True).predict(x), expected)


def test_register_rejects_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "bad.skops").write_bytes(b"junk")
    registry = Registry(tmp_path / "reg")
    with pytest.raises(ModelLoadError):
        registry.register("m", tmp_path / "bad.skops")
    assert registry.names() == []


def test_concurrent_registers_get_distinct_versions(tmp_path: Path, hgb: Any) -> None:
    registry = Registry(tmp_path)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(registry.register("m", hgb).version))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=int) == ["1", "2", "3", "4"] == registry.versions("m")
