"""``scorebus models``: show a version's metadata, and the same commands on a gs:// registry.

Errors are one ``error: ...`` line naming what exists, exit code 2, never a traceback.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from e2e_support import Cli
from sklearn.linear_model import LogisticRegression
from tests.gcs_emulator import gcs_emulator

from scorebus.models.demo import FEATURES

__all__ = ["gcs_emulator"]


def _one_line_error(cli: Cli, *args: str) -> str:
    proc = cli.run(*args, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_show_prints_every_metadata_field(cli: Cli) -> None:
    info = cli.json("models", "show", "fraud", "--json")
    assert info["ref"] == "fraud@1" and (info["name"], info["version"]) == ("fraud", "1")
    assert info["flavour"] == "sklearn" and info["file"] == "model.skops"
    assert tuple(info["features"]) == FEATURES and info["outputs"] == ["score"]
    assert 0.9 < info["metrics"]["auc"] <= 1.0
    assert info["params"]["max_depth"] == 5
    assert info["training_data"]["generator"] == "scorebus.models.demo.synthetic_features"
    assert info["created_at"].endswith("+00:00")
    assert Path(info["location"]) == cli.state.resolve() / "models" / "fraud" / "1"
    assert info["aliases"] == ["champion"]
    assert info["alias_history"] == {"champion": {"version": "1", "previous": []}}

    table = cli.run("models", "show", "fraud@champion").stdout
    for text in ("fraud@1", "auc = 0.9", "generator", "champion: 1", "amount, hour"):
        assert text in table, table


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("show", "fraud@9"), "model 'fraud' has no version '9'; versions: 1"),
        (("show", "fraud@canary"), "no alias 'canary'; aliases: champion; versions: 1"),
        (("show", "churn"), "unknown model 'churn'; registered models: fraud"),
        (("promote", "fraud", "9"), "model 'fraud' has no version '9'; versions: 1"),
        (("rollback", "fraud", "--alias", "canary"), "no alias 'canary'; aliases: champion"),
        (("rollback", "fraud"), "alias fraud@champion has no earlier version"),
    ],
)
def test_unknown_references_are_one_line_naming_what_exists(
    cli: Cli, args: tuple[str, ...], expected: str
) -> None:
    assert expected in _one_line_error(cli, "models", *args)


def test_the_commands_work_on_a_cloud_storage_registry(
    bare_cli: Cli, gcs_emulator: str, tmp_path: Path
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="scorebus-test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_emulator},
    )
    bucket = client.create_bucket(f"cli-{uuid.uuid4().hex[:12]}")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(100, 2))
    sio.dump(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), tmp_path / "m.skops")
    url = f"gs://{bucket.name}/ml"
    bare_cli.env = {**bare_cli.env, "STORAGE_EMULATOR_HOST": gcs_emulator}
    registry = ("--registry", url)

    for alias in ("champion", "challenger"):
        bare_cli.run(
            "models", "register", "m", str(tmp_path / "m.skops"), "--alias", alias, *registry
        )
    bare_cli.run("models", "promote", "m", "2", *registry)
    info = bare_cli.json("models", "show", "m", "--json", *registry)
    assert (info["ref"], info["location"]) == ("m@2", f"{url}/m/2")
    assert info["aliases"] == ["challenger", "champion"]
    assert info["alias_history"]["champion"] == {"version": "2", "previous": ["1"]}

    bare_cli.run("models", "rollback", "m", *registry)
    bare_cli.env["SCOREBUS_REGISTRY"] = url  # the environment names it as well as the flag
    rows = bare_cli.json("models", "list", "--json")
    assert [(r["version"], r["aliases"]) for r in rows] == [
        ("1", ["champion"]),
        ("2", ["challenger"]),
    ]
    line = _one_line_error(bare_cli, "models", "promote", "m", "7")
    assert "model 'm' has no version '7'; versions: 1, 2" in line
    assert not (bare_cli.cwd / ".scorebus" / "models").exists()
