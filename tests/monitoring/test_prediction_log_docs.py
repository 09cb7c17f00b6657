"""Every SQL example of docs/prediction-log.md runs against a real store."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gateway.log_settings import parse_log_section
from monitoring.prediction_log import (
    FeedbackRecord,
    LogSettings,
    PredictionLogWriter,
    PredictionRecord,
    run_sql,
)
from monitoring.prediction_log.segment_writer import WRITE_ATTEMPTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "prediction-log.md"
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.DOTALL)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    writer = PredictionLogWriter(root, LogSettings(store=str(root), flush_interval_s=0.1))
    writer.start()
    now = datetime.now(UTC)
    records: list[PredictionRecord | FeedbackRecord] = []
    for i in range(200):
        arm, version = ("canary", "2") if i % 10 == 0 else ("stable", "1")
        inputs: dict[str, object] = {
            "fare": 7.0 + i % 30,
            "sex": "female" if i % 3 else "male",
            "embarked": "SCQ"[i % 3],
            "pclass": str(1 + i % 3),
            "age": 20.0 + i % 40,
        }
        if i % 50 == 7:  # refused: the gateway keeps a wrongly typed value aside
            inputs = {**inputs, "fare": None, "_unrecognised": {"fare": "seven"}}
        for role, answered in (("primary", version), ("shadow", "2")):
            if role == "shadow" and i % 4:
                continue
            records.append(
                PredictionRecord(
                    request_id=f"r{i}",
                    row=0,
                    timestamp=now - timedelta(minutes=i),
                    route="titanic",
                    arm=arm,
                    role=role,
                    model="titanic",
                    version=answered,
                    replica="http://127.0.0.1:8001",
                    dialect="eval",
                    status=400 if i % 50 == 7 else 200,
                    latency_s=0.002 + i / 10_000,
                    trace_id=f"{i:032x}",
                    inputs=inputs,
                    outputs={"survived": i % 2, "probability": (i % 100) / 100},
                    error="input 'fare': expected FP32" if i % 50 == 7 else None,
                    # Sticky by subject: a subject's requests all have one arm (i % 10).
                    subject=f"user-{i % 20}",
                )
            )
        if i % 2 == 0:
            records.append(FeedbackRecord(request_id=f"r{i}", row=None, label=i % 2, timestamp=now))
    assert writer.submit(records)
    writer.close()
    return root


def test_the_doc_has_twelve_queries() -> None:
    assert len(QUERIES) == 12


def test_the_stickiness_query_finds_each_subject_on_one_arm(store: Path) -> None:
    (query,) = [q for q in QUERIES if "count(distinct arm)" in q]
    result = run_sql(store, query)
    assert result.columns[:2] == ["subject", "arms"]
    assert len(result.rows) == 20
    assert {row[1] for row in result.rows} == {1}
    assert {row[0]: row[2] for row in result.rows}["user-10"] == "canary"


@pytest.mark.parametrize("query", QUERIES, ids=[f"query-{i + 1}" for i in range(len(QUERIES))])
def test_documented_query_runs_and_answers(store: Path, query: str) -> None:
    result = run_sql(store, query)
    assert result.rows, f"no rows for:\n{query}"


def test_the_documented_log_section_is_accepted_and_shows_the_defaults(tmp_path: Path) -> None:
    """The gateway.yaml example of "Where it is", parsed as the gateway parses it: its
    queue sizes and the writer's settings are those used when the keys are left out."""
    example = yaml.safe_load(DOC.read_text().split("```yaml\n", 1)[1].split("```", 1)[0])
    documented = parse_log_section(example["log"], tmp_path)
    defaults = parse_log_section({"store": example["log"]["store"]}, tmp_path)
    assert documented is not None and defaults is not None
    assert (documented.max_queue, documented.writer) == (defaults.max_queue, defaults.writer)


def test_the_guarantees_give_the_number_of_write_attempts_the_writer_makes() -> None:
    """The page said a failing write was "retried three times": three attempts in all."""
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    text = " ".join(DOC.read_text().split())
    assert f"tried {words[WRITE_ATTEMPTS]} times in all" in text
    assert "retried three times" not in text
