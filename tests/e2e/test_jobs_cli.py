"""``scorebus jobs train|promote``: the workflow jobs run once, without a broker.

Exit codes: 0 trained / promoted, 1 training failed / rejected, 2 bad input (one line).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_support import Cli
from sklearn.linear_model import LogisticRegression
from tests.workflow_fits import write_dataset

from scorebus.models.demo import FEATURES, synthetic_features
from scorebus.models.registry import Registry

REPO = Path(__file__).resolve().parents[2]  # the CLI's subprocess imports tests.workflow_fits
FIT = "tests.workflow_fits:fit"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path)
    cli.env["PYTHONPATH"] = str(REPO)
    write_dataset(tmp_path / "train.csv", n=2000)
    return cli


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_train_then_promote_then_reject(cli: Cli) -> None:
    first = cli.json("jobs", "train", FIT, "--model", "fraud", "--data", "train.csv", "--json")
    weak = cli.run(
        "jobs", "train", FIT, "-m", "fraud", "--data", "train.csv",
        "--param", 'use=["amount"]', "--alias", "candidate",
    )  # fmt: skip
    promoted = cli.json("jobs", "promote", "fraud", "1", "--json")
    rejected = cli.run("jobs", "promote", "fraud", "2", "--margin", "0.01", check=False)

    assert first == {
        "model": "fraud",
        "version": "1",
        "metrics": {"auc": first["metrics"]["auc"]},
        "dataset": "train.csv",
    }
    assert _lines(weak.stderr)[0].startswith("trained fraud@2 on train.csv: auc=")
    assert (promoted["promoted"], promoted["previous"], promoted["reason"]) == (
        True, None, "no champion yet",
    )  # fmt: skip
    assert rejected.returncode == 1
    (line,) = _lines(rejected.stderr)
    assert line.startswith("rejected fraud@2: auc not higher than the champion's")
    registry = Registry(cli.state / "models")
    assert registry.aliases("fraud") == {"candidate": "2", "champion": "1"}
    assert registry.get("fraud", 2).features == ("amount",)


def test_promote_with_evaluate_on_a_holdout(cli: Cli) -> None:
    write_dataset(cli.cwd / "holdout.csv", n=2000, seed=21)
    cli.run("jobs", "train", FIT, "-m", "fraud", "--data", "train.csv", "--param", 'use=["hour"]')
    cli.run("models", "promote", "fraud", "1")
    cli.run("jobs", "train", FIT, "-m", "fraud", "--data", "train.csv")

    proc = cli.run(
        "jobs", "promote", "fraud", "2", "--margin", "0.05",
        "--evaluate", "tests.workflow_fits:evaluate_auc", "--holdout", "holdout.csv", "--json",
    )  # fmt: skip

    decision = json.loads(proc.stdout)
    assert decision["promoted"] is True
    assert decision["previous"] == "1"
    assert decision["candidate_value"] > decision["champion_value"] + 0.05
    assert Registry(cli.state / "models").aliases("fraud")["champion"] == "2"


def test_a_failing_fit_exits_1_with_one_line_and_keeps_the_champion(cli: Cli) -> None:
    cli.run("jobs", "train", FIT, "-m", "fraud", "--data", "train.csv")
    cli.run("models", "promote", "fraud", "1")

    proc = cli.run(
        "jobs", "train", "tests.workflow_fits:failing_fit", "-m", "fraud", "--data", "b.csv",
        check=False,
    )  # fmt: skip

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert _lines(proc.stderr) == [
        "training failed: fit: ValueError: b.csv: the label column is empty"
    ]
    registry = Registry(cli.state / "models")
    assert registry.versions("fraud") == ["1"]
    assert registry.aliases("fraud") == {"champion": "1"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ("jobs", "promote", "fraud", "9"),
            "error: model 'fraud' has no version '9'; versions: 1",
            id="unknown-version",
        ),
        pytest.param(
            ("jobs", "promote", "churn", "1"),
            "error: unknown model 'churn'; registered models: fraud",
            id="unknown-model",
        ),
        pytest.param(
            ("jobs", "promote", "fraud", "1", "--evaluate", "tests.workflow_fits:evaluate_auc"),
            "error: --evaluate and --holdout go together: give both or neither",
            id="evaluate-without-holdout",
        ),
        pytest.param(
            ("jobs", "train", "tests.workflow_fits:LABEL", "-m", "fraud", "--data", "t.csv"),
            "error: fit function 'tests.workflow_fits:LABEL' is a str, not a function",
            id="fit-not-callable",
        ),
        pytest.param(
            ("jobs", "train", FIT, "-m", "fraud", "--data", "t.csv", "--param", "oops"),
            "error: --param 'oops': expected KEY=VALUE, e.g. --param max_depth=5",
            id="bad-param",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Cli, args: tuple[str, ...], expected: str) -> None:
    x, y = synthetic_features(500, 1)
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    Registry(cli.state / "models").register("fraud", estimator, features=FEATURES)

    proc = cli.run(*args, check=False)

    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _lines(proc.stderr) == [expected]
    assert proc.stdout == ""
