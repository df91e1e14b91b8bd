"""The function's source archive: contents, determinism, and that it really runs.

The last test unpacks the archive and serves it with functions-framework as the
Cloud Function would be (HTTP-triggered: signature type ``http``), then pushes a
raw Pub/Sub body to the URL the push subscription uses: the event must be
scored by the model shipped inside the archive.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scorebus.deploy.source import ENTRY_POINT, REGISTRY_DIR, build_archive, scorebus_version
from scorebus.errors import ConfigError
from scorebus.models.registry import Registry


def _build(app_dir: tuple[Path, str], **kwargs: object) -> tuple[bytes, zipfile.ZipFile]:
    root, ref = app_dir
    archive = build_archive(
        ref,
        registry=Registry(root / ".scorebus" / "models"),
        models=["fraud@champion"],
        extras=["gcp", "bigquery", "remote"],
        **kwargs,  # type: ignore[arg-type]
    )
    return archive.data, zipfile.ZipFile(io.BytesIO(archive.data))


def test_the_archive_holds_main_requirements_app_and_model(app_dir: tuple[Path, str]) -> None:
    _, ref = app_dir
    module = ref.partition(":")[0]
    _, zf = _build(app_dir)
    names = zf.namelist()

    assert names == sorted(names)
    assert {"main.py", "requirements.txt", f"{module}.py"} <= set(names)
    assert f"{REGISTRY_DIR}/fraud/1/model.skops" in names
    assert f"{REGISTRY_DIR}/fraud/1/meta.json" in names
    aliases = json.loads(zf.read(f"{REGISTRY_DIR}/fraud/aliases.json"))
    assert aliases == {"aliases": {"champion": "1"}, "history": {}}
    main = zf.read("main.py").decode()
    compile(main, "main.py", "exec")
    assert f"{ENTRY_POINT} = functions_framework.cloud_event(entry_point({ref!r}))" in main
    requirements = zf.read("requirements.txt").decode().splitlines()
    assert requirements == [f"scorebus[bigquery,gcp,remote]=={scorebus_version()}"]


def test_two_builds_are_byte_identical(app_dir: tuple[Path, str]) -> None:
    first, zf = _build(app_dir)
    second, _ = _build(app_dir)

    assert first == second
    for info in zf.infolist():
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.external_attr >> 16 == 0o100644


def test_extra_requirements_and_includes_are_shipped(
    app_dir: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = app_dir
    monkeypatch.chdir(root)  # includes are relative to the current directory
    (root / "features.csv").write_text("amount,hour\n")
    _, zf = _build(app_dir, requirements=["onnxruntime>=1.17"], include=["features.csv"])

    assert zf.read("requirements.txt").decode().splitlines()[1:] == ["onnxruntime>=1.17"]
    assert zf.read("features.csv") == b"amount,hour\n"


def test_unknown_model_and_reserved_module_name_are_refused(app_dir: tuple[Path, str]) -> None:
    root, ref = app_dir
    registry = Registry(root / ".scorebus" / "models")

    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_archive(ref, registry=registry, models=["nope@champion"])
    (root / "main.py").write_text("from scorebus import App\napp = App('clash')\n")
    try:
        with pytest.raises(ConfigError, match="must not be called 'main'"):
            build_archive("main:app", registry=registry)
    finally:
        sys.modules.pop("main", None)
        (root / "main.py").unlink()


SERVE = """
import base64, json, os, sqlite3, sys
import functions_framework

app = functions_framework.create_app(target="score", source="main.py", signature_type="http")
data = base64.b64encode(json.dumps({"amount": 3.0, "hour": 1.0}).encode()).decode()
attrs = {"ce-id": "ev-1", "ce-type": "txn", "ce-source": "tests", "ce-specversion": "1.0"}
body = {"message": {"data": data, "attributes": attrs, "messageId": "m-1",
                    "publishTime": "2026-01-01T00:00:00Z"},
        "subscription": "projects/acme-ml/subscriptions/fraud.transactions.push"}
reply = app.test_client().post("/projects/acme-ml/topics/transactions", json=body)
rows = sqlite3.connect(sys.argv[1]).execute(
    "SELECT scorer, model, model_version FROM results WHERE event_id = 'ev-1'").fetchall()
sys.modules["main"].score.handler.close()
print(json.dumps({"status": reply.status_code, "rows": sorted(rows)}))
"""


def test_the_unpacked_archive_scores_a_raw_push_as_an_http_function(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    _, zf = _build(app_dir)
    zf.extractall(tmp_path / "workspace")
    store = tmp_path / "scores.db"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SCOREBUS_STORE": f"sqlite:///{store}",
        "SCOREBUS_BROKER": "memory://deploy-test",
        "SCOREBUS_REGISTRY": str(tmp_path / "workspace" / REGISTRY_DIR),
    }

    proc = subprocess.run(
        [sys.executable, "-c", SERVE, str(store)],
        cwd=tmp_path / "workspace",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "rows": [["audit", "fraud", "1"], ["fraud", "fraud", "1"]]}
