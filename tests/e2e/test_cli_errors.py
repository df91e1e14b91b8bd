"""Bad input to the ``scorebus`` command: one line saying what is wrong, a non-zero exit.

Never a traceback. A scorebus error exits 2 with ``error: ...``; a bad option value
is click's usage error (also exit 2).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from e2e_support import Cli

MISSING_MODULE = f"nosuchmodule_{uuid.uuid4().hex[:8]}"


def _one_line_error(cli: Cli, *args: str) -> str:
    proc = cli.run(*args, check=False, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert proc.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ("run", f"{MISSING_MODULE}:app"),
            ["cannot import module", MISSING_MODULE],
            id="run-missing-module",
        ),
        pytest.param(
            ("run", "scorebus.demo:nope"),
            ["'scorebus.demo'", "no attribute 'nope'"],
            id="run-missing-attribute",
        ),
        pytest.param(
            ("run", "scorebus.demo:TOPIC"),
            ["not a scorebus App"],
            id="run-not-an-app",
        ),
        pytest.param(("run", "notaref"), ["MODULE:ATTRIBUTE"], id="run-malformed-ref"),
        pytest.param(
            ("status", "--broker", "kafka://x"),
            ["kafka://x", "sqlite://", "memory://"],
            id="status-unknown-broker-scheme",
        ),
        pytest.param(
            ("status", "--store", "nosuchstore://x"),
            ["nosuchstore://x", "sqlite://"],
            id="status-unknown-store-scheme",
        ),
        pytest.param(("dlq", "show", "99999"), ["99999"], id="dlq-show-unknown-id"),
        pytest.param(("dlq", "replay"), ["--all"], id="dlq-replay-nothing-chosen"),
        pytest.param(
            ("models", "promote", "fraud", "99"), ["fraud", "99"], id="promote-unknown-version"
        ),
    ],
)
def test_a_bad_argument_is_one_error_line(
    cli: Cli, args: tuple[str, ...], expected: list[str]
) -> None:
    line = _one_line_error(cli, *args)
    for text in expected:
        assert text in line, line


def test_publishing_a_missing_file_is_an_error(cli: Cli) -> None:
    line = _one_line_error(cli, "publish", "topicx", "missing.jsonl")
    assert "missing.jsonl" in line


def test_publishing_a_line_that_is_not_json_names_the_line_and_publishes_nothing(
    cli: Cli,
) -> None:
    path: Path = cli.cwd / "bad.jsonl"
    path.write_text('{"amount": 1}\n{"amount": 2}\n\n{"amount": 3\n{"amount": 4}\n')

    line = _one_line_error(cli, "publish", "topicx", "bad.jsonl")

    assert "line 4" in line
    if (cli.state / "bus.db").exists():
        assert cli.query("bus.db", "SELECT COUNT(*) FROM messages") == [(0,)]


def test_a_structured_event_without_specversion_1_0_is_rejected(cli: Cli) -> None:
    path = cli.cwd / "ce.jsonl"
    path.write_text('{"specversion": "0.3", "id": "e-1", "type": "t", "data": {}}\n')

    line = _one_line_error(cli, "publish", "topicx", str(path))

    assert "line 1" in line
    assert "specversion" in line


def test_a_bad_option_value_is_a_usage_error(cli: Cli) -> None:
    proc = cli.run("demo", "--bad-fraction", "2", check=False, timeout=60)

    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--bad-fraction" in proc.stderr
    assert "Usage:" in proc.stderr
    # Nothing ran: no demo state was created.
    assert not (cli.state / "bus.db").exists()


def test_demo_refuses_a_non_embedded_broker(cli: Cli) -> None:
    line = _one_line_error(cli, "demo", "--events", "10", "--broker", "memory://x")
    assert "sqlite:///" in line
