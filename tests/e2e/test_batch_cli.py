"""`scorebus batch-predict` over a landed CSV file, as a user runs it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.e2e.e2e_support import Cli

from scorebus.models.demo import FEATURES, synthetic_transactions


def test_batch_predict_scores_good_rows_and_reports_bad_ones(
    tmp_path: Path, trained_registry: Path
) -> None:
    rows = synthetic_transactions(50, seed=3)
    rows[6]["amount"] = "a lot"  # row 7: wrong type
    del rows[19]["hour"]  # row 20: missing field
    path = tmp_path / "landed.csv"
    columns = ["card_id", "merchant", *FEATURES]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    cli = Cli(tmp_path)
    done = cli.run(
        "batch-predict",
        str(path),
        "--model",
        "fraud@champion",
        "--registry",
        str(trained_registry),
        "--schema",
        "scorebus.models.demo:Transaction",
        "--json",
    )
    report = json.loads(done.stdout)
    assert (report["rows"], report["scored"], report["bad"]) == (50, 48, 2)
    assert sorted(b["row"] for b in report["bad_rows"]) == [7, 20]
    assert report["model"].startswith("fraud@")
    out = Path(report["output_uri"].removeprefix("file://"))
    with out.open() as f:
        scored = list(csv.DictReader(f))
    assert len(scored) == 48
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in scored)

    missing = cli.run(
        "batch-predict",
        "nope.csv",
        "--model",
        "fraud",
        "--registry",
        str(trained_registry),
        check=False,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
