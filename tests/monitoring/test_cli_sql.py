"""``driftgate sql``: read-only queries over a store from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftgate.cli import main
from monitoring.prediction_log import PredictionLogWriter
from tests.monitoring.builders import FAILS_LATE, predictions


@pytest.fixture
def logged(writer: PredictionLogWriter, store: Path) -> Path:
    writer.submit(predictions(3))
    writer.flush()
    return store


def test_a_table_by_default(logged: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "SELECT model, count(*) AS n FROM predictions GROUP BY model"
    assert main(["sql", query, "--store", str(logged)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "model    n",
        "-------  -",
        "titanic  3",
        "(1 row)",
    ]


def test_json_and_csv(logged: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "SELECT request_id, timestamp FROM predictions ORDER BY 1 LIMIT 2"
    assert main(["sql", query, "--store", str(logged), "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["columns"] == ["request_id", "timestamp"]
    assert body["rows"][0] == ["req-0", "2025-03-14T12:00:00Z"]
    assert body["truncated"] is False
    assert main(["sql", query, "--store", str(logged), "--format", "csv", "--max-rows", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "request_id,timestamp\nreq-0,2025-03-14T12:00:00+00:00\n"
    assert "truncated to 1 rows" in captured.err


def test_refusals_and_errors_exit_2_with_the_reason(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "DELETE FROM predictions", "--store", str(logged)]) == 2
    assert "DELETE statements are refused" in capsys.readouterr().err
    assert main(["sql", "SELECT * FROM read_csv('/etc/passwd')", "--store", str(logged)]) == 2
    assert "Permission Error" in capsys.readouterr().err
    assert main(["sql", "SELECT 1", "--store", str(logged / "nope")]) == 2
    assert "no prediction log store" in capsys.readouterr().err
    assert main(["sql", FAILS_LATE, "--store", str(logged), "--max-rows", "1000000"]) == 2
    assert "Conversion Error" in capsys.readouterr().err
