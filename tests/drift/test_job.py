"""The drift job over a real store: every model version with traffic checked against its
reference, with every output written (rows, latest results, report, span events), and a
version that fails or lacks rows kept from the others' verdicts.

The store is written by the real ``PredictionLogWriter``; the reference profile is saved
beside the model version in a model repository folder, as ``driftgate reference build``
does (``tests/drift/job_traffic.py``, the ``repository`` fixture). The jobs process around
the job is ``test_job_process.py``, its webhook across runs ``test_job_webhook.py``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from drift.references import ReferenceStore
from drift.settings import DriftSettings, WindowSettings
from monitoring.job_results import read_latest
from monitoring.prediction_log import run_sql
from tests.cli_logging import root_logging  # noqa: F401  (an autouse fixture)
from tests.drift.job_traffic import (
    START,
    damage_profile,
    drift_job,
    traffic,
    write_traffic,
)


def test_a_window_like_the_reference_flags_nothing(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    write_traffic(tmp_path / "store", traffic(2000, seed=1), "1", START)
    summary = drift_job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert summary.startswith("1 of 1 model versions checked; drifted: none"), summary
    (entry,) = read_latest(tmp_path / "store", "drift").values()
    assert entry["window"]["rows"] == 2000
    assert {f["feature"] for f in entry["features"]} >= {"fare", "age", "sex", "survived"}


def test_a_shifted_feature_is_named_in_every_output(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    store = tmp_path / "store"
    write_traffic(store, traffic(2000, seed=2, fare_shift=25.0), "1", START)
    summary = drift_job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert "titanic/1:fare" in summary, summary

    rows = run_sql(
        store,
        "select feature, statistic, drifted, window_rows, report, sql from drift_results "
        "where model = 'titanic' and version = '1' order by feature",
    ).rows
    by_feature = {row[0]: row for row in rows}
    assert by_feature["fare"][2] is True and by_feature["age"][2] is False
    assert by_feature["fare"][3] == 2000
    report = by_feature["fare"][4]
    assert report.startswith("/reports/drift/titanic/1/")
    assert (store / report.removeprefix("/")).is_file()
    # The stored SQL reproduces the window's counts.
    assert run_sql(store, by_feature["fare"][5]).rows

    (check,) = [s for s in spans.get_finished_spans() if s.name == "drift check"]
    events = {e.attributes["driftgate.feature"]: e.attributes for e in check.events if e.attributes}
    assert events["fare"]["driftgate.drift.drifted"] is True


def test_the_window_is_the_latest_rows(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    store = tmp_path / "store"
    write_traffic(store, traffic(2000, seed=3, fare_shift=25.0), "1", START)
    write_traffic(store, traffic(2000, seed=4), "1", START + timedelta(minutes=1))
    summary = drift_job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert summary.endswith("drifted: none"), summary  # the shifted rows are older


def test_too_few_rows_give_no_verdict(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    write_traffic(tmp_path / "store", traffic(100, seed=5), "1", START)
    summary = drift_job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert summary.startswith("0 of 1 model versions checked"), summary
    assert read_latest(tmp_path / "store", "drift") == {}


def test_a_version_without_reference_gets_one_from_its_first_rows(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    store = tmp_path / "store"
    (tmp_path / "models" / "titanic" / "2").mkdir()
    write_traffic(store, traffic(1000, seed=6), "2", START)
    write_traffic(store, traffic(1000, seed=7, fare_shift=25.0), "2", START + timedelta(minutes=1))
    job = drift_job(tmp_path, spans, START + timedelta(minutes=5), auto_reference_rows=1000)
    job.settings = DriftSettings(window=WindowSettings(rows=1000), min_rows=500)
    summary = job.run()
    assert ReferenceStore(tmp_path / "models").history("titanic", "2"), "no profile saved"
    assert "titanic/2:fare" in summary, summary


def test_a_feature_arriving_empty_is_named_by_its_missing_test(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    columns = traffic(2000, seed=8)
    columns["in_age"][np.random.default_rng(9).random(2000) < 0.4] = np.nan
    write_traffic(tmp_path / "store", columns, "1", START)
    summary = drift_job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert "titanic/1:age:missing" in summary, summary
    assert "titanic/1:age," not in summary + ","  # the values themselves did not move


def test_a_version_that_fails_does_not_stop_the_others(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    damage_profile(repository, "2")
    write_traffic(tmp_path / "store", traffic(2000, seed=9, fare_shift=25.0), "1", START)
    write_traffic(tmp_path / "store", traffic(2000, seed=10), "2", START)

    summary = drift_job(tmp_path, spans, START + timedelta(minutes=5)).run()

    assert summary.startswith("1 of 2 model versions checked; drifted: titanic/1:fare"), summary
    assert "; failed: titanic/2 arm a (" in summary
    assert "not a readable reference profile" in summary


def test_a_run_fails_when_every_version_it_tried_failed(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    damage_profile(repository, "2")
    write_traffic(tmp_path / "store", traffic(2000, seed=10), "2", START)

    with pytest.raises(RuntimeError, match=r"every model version tried failed: titanic/2 arm a"):
        drift_job(tmp_path, spans, START + timedelta(minutes=5)).run()
