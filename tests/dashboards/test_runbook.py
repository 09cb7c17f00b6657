"""Every ``driftgate sql "..."`` of docs/runbook.md runs on the prediction log's views.

The runbook's SQL must work when on-call pastes it in the middle of an incident. Each
statement runs in DuckDB over an in-memory stand-in for the store's catalog views
(``predictions``, ``predictions_labeled``, ``drift_results``) with the columns the
catalog defines (monitoring/prediction_log/catalog.py) for the demo's titanic model,
holding a few rows, so that a misspelled column, a type mismatch or a syntax error fails
here rather than on call.
"""

from __future__ import annotations

import re

import duckdb
import pytest

from tests.dashboards.artifacts import (
    RUNBOOK,
    dashboard_files,
    load_dashboard,
    panels,
    template_variables,
)

STATEMENTS = re.findall(r'driftgate sql "(.*?)"', RUNBOOK.read_text(), flags=re.DOTALL)

STAND_IN = """
CREATE TABLE predictions (
    model VARCHAR, date DATE, timestamp TIMESTAMPTZ, request_id VARCHAR, "row" INTEGER,
    route VARCHAR, arm VARCHAR, role VARCHAR, version VARCHAR, replica VARCHAR,
    dialect VARCHAR, status INTEGER, latency_s DOUBLE, trace_id VARCHAR, error VARCHAR,
    subject VARCHAR, in_fare DOUBLE, in_sex VARCHAR, in_embarked VARCHAR, in_pclass VARCHAR,
    in_age DOUBLE, out_survived BIGINT, out_probability DOUBLE
);
INSERT INTO predictions VALUES
    ('titanic', current_date, now(), 'r1', 0, 'titanic', 'stable', 'primary', '1',
     'http://127.0.0.1:8001', 'eval', 200, 0.004, '0af7651916cd43dd8448eb211c80319c', NULL,
     'app', 7, 'male', 'Q', '3', 27, 0, 0.11),
    ('titanic', current_date, now(), 'r2', 0, 'titanic_next', '', 'fallback', '1',
     'http://127.0.0.1:8002', 'eval', 503, 0.7, 'b7ad6b7169203331b7ad6b7169203331',
     'version 7 is not ready', NULL, 7, 'female', 'S', '1', NULL, 1, 0.93);
CREATE TABLE feedback (request_id VARCHAR, "row" INTEGER, label BIGINT,
                       timestamp TIMESTAMPTZ, subject VARCHAR);
INSERT INTO feedback VALUES ('r1', 0, 1, now(), 'labeller');
CREATE VIEW predictions_labeled AS
    SELECT p.*, f.label, f.timestamp AS label_timestamp, f.subject AS label_subject
    FROM predictions AS p LEFT JOIN feedback AS f USING (request_id, "row");
"""


def _stand_in() -> str:
    """The stand-in tables, plus ``drift_results`` with the catalog's own columns."""
    from monitoring.prediction_log.segments import DRIFT_RESULT_SCHEMA

    columns = ", ".join(
        f'CAST(NULL AS {_SQL_TYPES[str(field.type)]}) AS "{field.name}"'
        for field in DRIFT_RESULT_SCHEMA
    )
    drift = (
        "CREATE VIEW drift_results AS SELECT CAST(NULL AS VARCHAR) AS model, "
        f"CAST(NULL AS DATE) AS date, {columns} WHERE false;"
    )
    return STAND_IN + drift


_SQL_TYPES = {
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    "string": "VARCHAR",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "int64": "BIGINT",
    "int32": "INTEGER",
}


def test_the_runbook_has_sql_for_on_call() -> None:
    assert len(STATEMENTS) >= 10


@pytest.mark.parametrize("statement", STATEMENTS, ids=lambda s: " ".join(s.split())[:60])
def test_runbook_sql_runs_on_the_prediction_log_views(statement: str) -> None:
    assert '"' not in statement and "`" not in statement  # one shell double-quoted argument
    with duckdb.connect() as con:
        con.execute(_stand_in())
        (count,) = con.execute(f"SELECT count(*) FROM ({statement})").fetchone() or (None,)
    assert count is not None


# Words the runbook sets in italics that are no panel: emphasis, the dashboards' variables,
# Prometheus' own pages, and the DriftgateJobOverdue description's two forms (in quotes).
NOT_PANELS = {"which", "how many", "hangs", "not running", "Targets"}


def _italics(markdown: str) -> list[str]:
    """The phrases set in single-asterisk italics outside code, whitespace normalised."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    prose = re.sub(r"`[^`]*`", "", prose)
    prose = prose.replace("**", "")
    return [" ".join(found.split()) for found in re.findall(r"\*([^*]+)\*", prose)]


def test_italics_finds_panel_names_across_lines() -> None:
    text = "see *Replica in\n   rotation* and `*not this*`, **Bold** and\n```sh\n*nor*\n```"
    assert _italics(text) == ["Replica in rotation"]


def test_every_panel_the_runbook_names_is_on_a_dashboard() -> None:
    """On-call looks for the panel by its title: a renamed or misquoted one is not found."""
    titles = set()
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        titles |= {panel.get("title", "") for panel in panels(dashboard)}
        titles |= {v.get("label") or v.get("name", "") for v in template_variables(dashboard)}
    named = [
        phrase
        for phrase in _italics(RUNBOOK.read_text())
        if phrase not in NOT_PANELS and not phrase.startswith('"')
    ]
    assert named, "the runbook names no panel"
    assert sorted(set(named) - titles) == []
