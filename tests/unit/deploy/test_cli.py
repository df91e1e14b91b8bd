"""``scorebus deploy gcp`` as a user runs it: a subprocess with a controlled PATH and HOME.

No pulumi CLI, no Google credentials, no network: what is missing must be said
in one line with exit code 2; ``--emit`` needs neither and writes a project
whose program builds the same graph (checked under Pulumi's mocks).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scorebus.deploy.automation import require_google_credentials, require_pulumi_cli
from scorebus.errors import ConfigError

NO_PULUMI_PATH = "/usr/bin:/bin"


def _env(home: Path, path: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "SYSTEMROOT")}
    return keep | {
        "PATH": path,
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "NO_GCE_CHECK": "true",  # google-auth: do not probe a metadata server
    }


def _scorebus(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scorebus.cli.main", "deploy", "gcp", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_without_the_pulumi_cli_one_line_says_how_to_install_it(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    root, ref = app_dir
    assert shutil.which("pulumi", path=NO_PULUMI_PATH) is None

    proc = _scorebus(
        root,
        _env(tmp_path, NO_PULUMI_PATH),
        "--project",
        "p",
        "--region",
        "europe-west4",
        "--app",
        ref,
    )

    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "pulumi CLI is not installed" in line and "get.pulumi.com" in line


def test_without_google_credentials_one_line_says_how_to_get_them(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    root, ref = app_dir
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "pulumi").chmod(0o755)

    proc = _scorebus(
        root,
        _env(tmp_path, f"{bin_dir}:{NO_PULUMI_PATH}"),
        "--project",
        "p",
        "--region",
        "europe-west4",
        "--app",
        ref,
        "--preview",
    )

    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "no Google credentials" in line and "gcloud auth application-default login" in line


def test_a_failing_pulumi_run_is_one_line_too(app_dir: tuple[Path, str], tmp_path: Path) -> None:
    root, ref = app_dir
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A pulumi that knows its version, accepts every other command and does nothing.
    version = importlib.metadata.version("pulumi")
    (bin_dir / "pulumi").write_text(f'#!/bin/sh\n[ "$1" = version ] && echo v{version}\nexit 0\n')
    (bin_dir / "pulumi").chmod(0o755)
    env = _env(tmp_path, f"{bin_dir}:{NO_PULUMI_PATH}") | {
        "GOOGLE_OAUTH_ACCESS_TOKEN": "not-a-token",
        "TMPDIR": str(tmp_path),
    }

    proc = _scorebus(
        root, env, "--project", "p", "--region", "europe-west4", "--app", ref, "--preview"
    )

    assert proc.returncode == 2
    assert _one_line(proc.stderr).startswith("error: pulumi preview failed")


def test_checks_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="install it with"):
        require_pulumi_cli(path=str(tmp_path))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="no Google credentials"):
        require_google_credentials()
    require_google_credentials({"GOOGLE_OAUTH_ACCESS_TOKEN": "token"})


RUN_UNDER_MOCKS = """
import json, runpy, sys
import pulumi

types = []

class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        types.append(args.typ)
        state = dict(args.inputs)
        if args.typ == "gcp:serviceaccount/account:Account":
            state["email"] = args.inputs["accountId"] + "@p.iam.gserviceaccount.com"
        return args.name + "-id", state

    def call(self, args):
        return {"number": "1"}

pulumi.runtime.set_mocks(Mocks(), project="scorebus-fraud", stack="dev")

@pulumi.runtime.test
def program():
    runpy.run_path(sys.argv[1], run_name="__main__")

program()
print(json.dumps(sorted(set(types))))
"""


def test_emit_writes_a_project_whose_program_builds_the_graph(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    root, ref = app_dir
    out = tmp_path / "infra"
    env = _env(tmp_path, NO_PULUMI_PATH)

    proc = _scorebus(
        root,
        env,
        "--project",
        "p",
        "--region",
        "europe-west4",
        "--app",
        ref,
        "--emit",
        str(out),
        "--serving-image",
        "img:1",
    )

    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "Pulumi.yaml",
        "__main__.py",
        "requirements.txt",
    ]
    main = (out / "__main__.py").read_text()
    compile(main, "__main__.py", "exec")
    assert f"app={ref!r}" in main and "VertexArgs(serving_image='img:1'" in main
    assert "runtime:\n  name: python" in (out / "Pulumi.yaml").read_text()
    requirements = (out / "requirements.txt").read_text()
    assert "pulumi-gcp>=10,<11" in requirements and "scorebus[" in requirements

    built = subprocess.run(
        [sys.executable, "-c", RUN_UNDER_MOCKS, str(out / "__main__.py")],
        cwd=out,
        env=env | {"TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    types = json.loads(built.stdout.strip().splitlines()[-1])
    assert "gcp:cloudfunctionsv2/function:Function" in types
    assert "pulumi-python:dynamic:Resource" in types


def test_without_the_deploy_extra_one_line_names_the_pip_command(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    root, ref = app_dir
    code = (
        "import sys; sys.modules['pulumi'] = None  # as if pulumi were not installed\n"
        "from scorebus.cli.main import main; main()"
    )
    argv = ["deploy", "gcp", "--project", "p", "--region", "r", "--app", ref, "--emit", "x"]

    proc = subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=root,
        env=_env(tmp_path, NO_PULUMI_PATH),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 2
    assert "pip install 'scorebus[deploy]'" in _one_line(proc.stderr)


def test_conflicting_flags_are_refused(app_dir: tuple[Path, str], tmp_path: Path) -> None:
    root, ref = app_dir

    proc = _scorebus(
        root,
        _env(tmp_path, NO_PULUMI_PATH),
        "--project",
        "p",
        "--region",
        "r",
        "--app",
        ref,
        "--preview",
        "--destroy",
    )

    assert proc.returncode == 2
    assert "exclude each other" in _one_line(proc.stderr)
