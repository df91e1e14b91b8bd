"""The README's snippets are executed, so they cannot rot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
QUICKSTART = ROOT / "examples" / "quickstart"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"readme_block_{index}"}
    exec(compile(python_blocks()[index], f"README block {index}", "exec"), namespace)
    from scorebus import App

    apps = [v for v in namespace.values() if isinstance(v, App)]
    assert apps, "each README block defines an App"
    assert apps[0].scorers or apps[0].handlers


def test_readme_quickstart_is_the_example_file() -> None:
    example = (QUICKSTART / "pipeline.py").read_text()
    block = python_blocks()[0]
    # The README shows the example without its module docstring and __future__ import.
    body = example.split("import msgspec", 1)[1]
    assert "import msgspec" + body == block


def cli(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBUS_")}
    return subprocess.run(
        [sys.executable, "-m", "scorebus.cli.main", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_readme_quickstart_commands(tmp_path: Path) -> None:
    for name in ("pipeline.py", "train.py", "readings.jsonl"):
        shutil.copy(QUICKSTART / name, tmp_path / name)
    subprocess.run([sys.executable, "train.py"], cwd=tmp_path, check=True, timeout=120)
    assert cli("publish", "readings", "readings.jsonl", cwd=tmp_path).returncode == 0
    run = cli("run", "pipeline:app", "--until-idle", "1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()

    rows = json.loads(cli("results", "--json", cwd=tmp_path).stdout)
    by_device = {r["output"]["device"]: r for r in rows}
    assert set(by_device) == {"d-1", "d-2"}
    assert by_device["d-1"]["output"]["alert"] is True
    assert by_device["d-2"]["output"]["alert"] is False
    assert {r["model"] + "@" + r["model_version"] for r in rows} == {"overheat@1"}

    letters = json.loads(cli("dlq", "list", "--json", cwd=tmp_path).stdout)
    assert [d["reason"] for d in letters] == ["schema"]
    assert "$.temperature_c" in letters[0]["error"]

    status = json.loads(cli("status", "--json", cwd=tmp_path).stdout)
    scorer = next(s for s in status["subscriptions"] if s["subscription"] == "sensors.overheat")
    assert (scorer["pending"], scorer["in_flight"], scorer["scored"]) == (0, 0, 2)
    assert status["outbox"] == 0
    alerts = next(s for s in status["subscriptions"] if s["topic"] == "alerts")
    assert alerts["pending"] == 2  # both results were published once, through the outbox
