"""``open_registry`` and the settings: one way to name a folder or a gs:// registry."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scorebus.app import Settings
from scorebus.errors import ConfigError
from scorebus.models import ModelRegistry, Registry, open_registry
from scorebus.models.registry import registry_location


def test_a_folder_opens_the_local_registry(tmp_path: Path) -> None:
    for root in (tmp_path, str(tmp_path)):
        registry = open_registry(root)
        assert isinstance(registry, Registry) and isinstance(registry, ModelRegistry)
        assert registry.root == tmp_path and registry.location == str(tmp_path)
    with pytest.raises(ConfigError, match=r"is a folder: options \['endpoint'\]"):
        open_registry(tmp_path, endpoint="http://127.0.0.1:1")


def test_a_gs_url_opens_the_cloud_storage_registry(tmp_path: Path) -> None:
    from scorebus.models.registry_gcs import GcsRegistry

    registry = open_registry("gs://my-bucket/teams//ml/", cache_dir=tmp_path)
    assert isinstance(registry, GcsRegistry) and isinstance(registry, ModelRegistry)
    assert (registry.bucket_name, registry.prefix) == ("my-bucket", "teams/ml/")
    assert registry.location == "gs://my-bucket/teams/ml"
    assert open_registry("gs://my-bucket").location == "gs://my-bucket"  # type: ignore[union-attr]


@pytest.mark.parametrize("url", ["gs://", "gs://B_ad", "gs://bucket/../x", "gs:///ml"])
def test_a_malformed_gs_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"expected gs://BUCKET or gs://BUCKET/PREFIX"):
        open_registry(url)


def test_without_the_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
    for module in ("scorebus.models.registry_gcs", "scorebus.models._gcs"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=r"pip install 'scorebus\[gcs\]'"):
        open_registry("gs://bucket/ml")


def test_settings_keep_a_gs_url_and_make_anything_else_a_path() -> None:
    assert registry_location("gs://b/p") == "gs://b/p"
    assert registry_location("models") == Path("models")
    assert Settings.from_env({"SCOREBUS_REGISTRY": "gs://b/p"}).registry == "gs://b/p"
    assert Settings.from_env({"SCOREBUS_REGISTRY": "reg"}).registry == Path("reg")
    assert Settings(registry="x/models").registry == Path("x/models")
    assert Settings().override(registry="gs://b").registry == "gs://b"
