"""Batch prediction over real CSV, JSON-lines and Parquet files with a tiny real model."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from scorebus.errors import ConfigError, DecodeError, ModelUnavailable
from scorebus.models.base import Signature
from scorebus.models.sklearn import SklearnModel
from scorebus.runtime.batch import BatchReport, batch_predict, is_output, output_uris
from scorebus.runtime.files import LocalStorage, RowReader


class Txn(msgspec.Struct):
    id: str
    amount: float
    age: float


@pytest.fixture(scope="module")
def model() -> SklearnModel:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(int)
    estimator = LogisticRegression().fit(x, y)
    return SklearnModel.from_estimator(
        estimator, name="tiny", version="3", features=("amount", "age")
    )


def expected(model: SklearnModel, features: list[tuple[float, float]]) -> list[float]:
    """What the model says about the same rows, scored on their own."""
    return [float(s) for s in model.predict(np.array(features, dtype=np.float32))]


def bad_of(report: BatchReport) -> list[tuple[int, str]]:
    return [(b.row, b.reason) for b in report.bad_rows]


def read_errors(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_good_rows_are_scored_and_bad_rows_reported_by_number(
    tmp_path: Path, model: SklearnModel
) -> None:
    src = tmp_path / "txns.csv"
    src.write_text(
        "id,amount,age\n"
        "a,1.5,0.3\n"  # row 1
        "b,abc,0.4\n"  # row 2: wrong type
        "c,2.0\n"  # row 3: a column missing
        "d,,0.2\n"  # row 4: empty cell for a required field
        "e,-0.5,1.8\n"  # row 5
        "\n"  # blank: not a row
        "f,0.25,-0.65\n"  # row 6
    )
    done: list[tuple[int, int | None]] = []

    report = batch_predict(
        str(src), model=model, schema=Txn, batch_size=2, progress=lambda n, t: done.append((n, t))
    )

    assert (report.rows, report.scored, report.bad) == (6, 3, 3)
    assert bad_of(report) == [(2, "schema"), (3, "undecodable"), (4, "schema")]
    assert "$.amount" in report.bad_rows[0].error
    assert "`amount`" in report.bad_rows[2].error
    assert [b.line for b in report.bad_rows] == [3, 4, 5]
    assert report.model == "tiny@3" and report.format == "csv"
    assert report.output_uri == str(tmp_path / "txns.predictions.csv")
    assert done == [(2, None), (4, None), (6, None)]
    with open(report.output_uri, newline="") as f:
        out = list(csv.DictReader(f))
    assert [(r["row"], r["id"], r["model"], r["model_version"]) for r in out] == [
        ("1", "a", "tiny", "3"),
        ("5", "e", "tiny", "3"),
        ("6", "f", "tiny", "3"),
    ]
    want = expected(model, [(1.5, 0.3), (-0.5, 1.8), (0.25, -0.65)])
    assert [float(r["score"]) for r in out] == want
    errors = read_errors(tmp_path / "txns.errors.jsonl")
    assert [(e["row"], e["reason"], e.get("id")) for e in errors] == [
        (2, "schema", "b"),
        (3, "undecodable", None),
        (4, "schema", "d"),
    ]


def test_json_lines_with_broken_lines_through_a_file_uri(
    tmp_path: Path, model: SklearnModel
) -> None:
    src = tmp_path / "txns.jsonl"
    src.write_text(
        '{"id": "a", "amount": 1, "age": 2}\n'  # row 1 (ints are fine for floats)
        "not json at all\n"  # row 2
        "[1, 2]\n"  # row 3: JSON, not an object
        '{"id": "x", "amount": "high", "age": 3}\n'  # row 4: wrong type
        "\n"
        '{"id": "y", "age": 3}\n'  # row 5: missing field
        '{"id": "b", "amount": -0.75, "age": 0.5}'  # row 6, no final newline
    )

    report = batch_predict(f"file://{src}", model=model, schema=Txn)

    assert bad_of(report) == [(2, "undecodable"), (3, "undecodable"), (4, "schema"), (5, "schema")]
    assert [b.line for b in report.bad_rows] == [2, 3, 4, 6]
    assert report.output_uri == f"file://{tmp_path}/txns.predictions.jsonl"
    lines = (tmp_path / "txns.predictions.jsonl").read_text().splitlines()
    out = [json.loads(line) for line in lines]
    assert [(o["row"], o["id"]) for o in out] == [(1, "a"), (6, "b")]
    assert [o["score"] for o in out] == expected(model, [(1, 2), (-0.75, 0.5)])
    assert {o["model"] + "@" + o["model_version"] for o in out} == {"tiny@3"}
    assert len(read_errors(tmp_path / "txns.errors.jsonl")) == 4


def test_parquet_is_read_by_batches_and_written_back_as_parquet(
    tmp_path: Path, model: SklearnModel
) -> None:
    amounts = [0.5, None, 1.0, -1.0, 2.0, 0.1, None, -0.3]
    ages = [1.0, 2.0, -1.0, 0.0, 0.5, 0.25, 1.0, 3.0]
    table = pa.table({"id": [f"t{i}" for i in range(1, 9)], "amount": amounts, "age": ages})
    pq.write_table(table, tmp_path / "txns.parquet", row_group_size=3)
    done: list[tuple[int, int | None]] = []

    report = batch_predict(
        str(tmp_path / "txns.parquet"),
        model=model,
        schema=Txn,
        batch_size=3,
        progress=lambda n, t: done.append((n, t)),
    )

    assert bad_of(report) == [(2, "schema"), (7, "schema")]
    assert "got `null`" in report.bad_rows[0].error
    assert done == [(3, 8), (6, 8), (8, 8)]
    out = pq.read_table(report.output_uri).to_pylist()
    good = [i for i in range(8) if amounts[i] is not None]
    assert [o["row"] for o in out] == [i + 1 for i in good]
    assert [o["id"] for o in out] == [f"t{i + 1}" for i in good]
    assert [o["score"] for o in out] == expected(model, [(amounts[i], ages[i]) for i in good])  # type: ignore[misc]


def test_a_column_the_model_needs_is_missing_from_every_row(
    tmp_path: Path, model: SklearnModel
) -> None:
    pq.write_table(pa.table({"id": ["a", "b", "c"], "amount": [1.0, 2.0, 3.0]}), tmp_path / "x.pq")

    report = batch_predict(str(tmp_path / "x.pq"), model=model)

    assert (report.scored, bad_of(report)) == (
        0,
        [(1, "features"), (2, "features"), (3, "features")],
    )
    assert report.bad_rows[0].error == "missing column 'age'"
    assert pq.read_table(report.output_uri).num_rows == 0


def test_a_row_the_model_rejects_is_isolated_from_its_batch(
    tmp_path: Path, model: SklearnModel
) -> None:
    rows = [f"r{i},{i / 10},{-i / 10}" for i in range(10)]
    rows[6] = "r6,nan,1"  # parses as a float; LogisticRegression refuses NaN
    (tmp_path / "in.csv").write_text("id,amount,age\n" + "\n".join(rows) + "\n")

    report = batch_predict(str(tmp_path / "in.csv"), model=model, schema=Txn)

    assert report.scored == 9
    assert bad_of(report) == [(7, "model")]
    assert report.bad_rows[0].error.startswith("ValueError: Input X contains NaN")


def test_post_processing_shapes_each_result(tmp_path: Path, model: SklearnModel) -> None:
    (tmp_path / "in.jsonl").write_text(
        '{"id": "a", "amount": 2, "age": 0}\n{"id": "b", "amount": -2, "age": 0}\n'
    )

    def decide(rows: list[Txn], scores: np.ndarray) -> list[dict[str, Any]]:
        return [{"fraud": bool(s > 0.5), "p": round(float(s), 3)} for s in scores]

    report = batch_predict(str(tmp_path / "in.jsonl"), model=model, schema=Txn, fn=decide)

    out = [json.loads(x) for x in Path(report.output_uri).read_text().splitlines()]
    assert [list(o) for o in out] == [["row", "id", "fraud", "p", "model", "model_version"]] * 2
    assert [o["fraud"] for o in out] == [True, False]


def test_a_rerun_replaces_the_outputs_and_leaves_nothing_else(
    tmp_path: Path, model: SklearnModel
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,amount,age\na,1,1\nb,x,1\n")
    first = batch_predict(str(src), model=model, schema=Txn)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    second = batch_predict(str(src), model=model, schema=Txn)

    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert sorted(before) == ["in.csv", "in.errors.jsonl", "in.predictions.csv"]
    assert (first.scored, first.bad) == (second.scored, second.bad) == (1, 1)


def test_a_failed_run_keeps_the_previous_outputs(tmp_path: Path, model: SklearnModel) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,amount,age\na,1,1\n")
    batch_predict(str(src), model=model, schema=Txn)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    src.write_bytes(b"id,amount,age\na,1,1\nb,\xff\xfe,1\n")  # not UTF-8 on line 3

    with pytest.raises(DecodeError, match="line 3: not UTF-8"):
        batch_predict(str(src), model=model, schema=Txn, batch_size=1)

    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "in.csv"}
    assert after == {k: v for k, v in before.items() if k != "in.csv"}


def test_an_unavailable_model_stops_the_job_without_outputs(tmp_path: Path) -> None:
    class Remote:
        name, version = "remote", "1"
        signature = Signature(inputs=("amount", "age"))

        def load(self) -> None: ...

        def predict(self, batch: np.ndarray) -> np.ndarray:
            raise ModelUnavailable("endpoint answered 503")

    (tmp_path / "in.jsonl").write_text('{"id": "a", "amount": 1, "age": 1}\n')

    with pytest.raises(ModelUnavailable):
        batch_predict(str(tmp_path / "in.jsonl"), model=Remote(), schema=Txn)

    assert [p.name for p in tmp_path.iterdir()] == ["in.jsonl"]


def test_format_by_content_type_and_refusals(tmp_path: Path, model: SklearnModel) -> None:
    (tmp_path / "upload").write_text("id,amount,age\na,1,2\n")
    report = batch_predict(str(tmp_path / "upload"), model=model, content_type="text/csv")
    assert report.output_uri.endswith("upload.predictions.csv") and report.scored == 1

    with pytest.raises(DecodeError, match="cannot tell the format"):
        batch_predict(str(tmp_path / "upload"), model=model)

    class Partial(msgspec.Struct):
        amount: float

    with pytest.raises(ConfigError, match="lacks the model's inputs"):
        batch_predict(
            str(tmp_path / "upload"), model=model, schema=Partial, content_type="text/csv"
        )
    with pytest.raises(ConfigError, match="GcsStorage"):
        batch_predict("gs://bucket/in.csv", model=model)


def test_output_names() -> None:
    assert output_uris("gs://b/in/day.csv", "csv") == (
        "gs://b/in/day.predictions.csv",
        "gs://b/in/day.errors.jsonl",
    )
    assert output_uris("/x/day.ndjson", "jsonl") == (
        "/x/day.predictions.jsonl",
        "/x/day.errors.jsonl",
    )
    assert output_uris("a.parquet", "parquet", "gs://o/s.parquet") == (
        "gs://o/s.parquet",
        "gs://o/s.errors.jsonl",
    )
    assert is_output("gs://b/day.predictions.csv") and is_output("day.errors.jsonl")
    assert not is_output("gs://b/predictions/day.csv")


def test_text_files_are_read_a_chunk_at_a_time(tmp_path: Path) -> None:
    lines = [json.dumps({"id": str(i), "pad": "x" * 200}) for i in range(20_000)]
    (tmp_path / "big.jsonl").write_text("\n".join(lines))
    with LocalStorage().open_read(str(tmp_path / "big.jsonl")) as f:
        chunks = iter(RowReader(f, "jsonl", chunk_rows=1000))
        first = next(chunks)
        position = f.tell()
        rest = sum(len(c) for c in chunks)

    size = (tmp_path / "big.jsonl").stat().st_size
    assert len(first) == 1000 and first[0].row == 1 and rest == 19_000
    assert position < size / 2  # the first chunk did not need the whole file


def test_local_storage_writes_only_on_a_clean_close(tmp_path: Path) -> None:
    storage = LocalStorage()
    target = str(tmp_path / "out" / "f.bin")
    with pytest.raises(RuntimeError), storage.open_write(target) as f:
        f.write(b"half")
        raise RuntimeError("crash")
    assert not storage.exists(target) and list((tmp_path / "out").iterdir()) == []

    with storage.open_write(target) as f:
        f.write(b"whole")
    with storage.open_read(f"file://{target}") as f:
        assert f.read() == b"whole"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["f.bin"]
