"""monitoring.job_results: the latest-results files and the gauges scraped from them."""

from __future__ import annotations

import logging
import math
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.job_results import (
    JobResultsCollector,
    latest_path,
    read_latest,
    update_latest,
)

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


def drift_entry(
    *, arm: str = "primary", age: timedelta = timedelta(hours=1), score: float | None = 181.7
) -> dict[str, Any]:
    finished = NOW - age
    return {
        "model": "titanic",
        "version": "2",
        "arm": arm,
        "timestamp": finished.isoformat(),
        "run_id": f"run-{arm}",
        "report": "/reports/drift/titanic/2/run.html",
        "window": {
            "kind": "count",
            "start": (finished - timedelta(hours=1)).isoformat(),
            "end": finished.isoformat(),
            "rows": 505,
        },
        "features": [
            {
                "feature": "sex",
                "test": "chi_square",
                "score": score,
                "p_value": 1e-9,
                "threshold": 0.01,
                "drifted": True,
            },
            {
                "feature": "age",
                "test": "ks",
                "score": 0.04,
                "p_value": 0.5,
                "threshold": 0.01,
                "drifted": False,
            },
        ],
    }


def scrape(collector: JobResultsCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a fresh registry holding ``collector``, by name and sorted labels."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def collector_at_now(store: Path, max_age_s: float = 86400) -> JobResultsCollector:
    return JobResultsCollector(store, max_age_s, clock=NOW.timestamp)


def test_update_latest_merges_keys_and_reads_back(store: Path) -> None:
    update_latest(store, "drift", "titanic/2/primary", drift_entry())
    update_latest(store, "drift", "titanic/2/shadow", drift_entry(arm="shadow"))
    latest = read_latest(store, "drift")
    assert set(latest) == {"titanic/2/primary", "titanic/2/shadow"}
    assert latest["titanic/2/shadow"]["arm"] == "shadow"
    assert read_latest(store, "explain") == {}
    assert not any((store / ".staging").glob("*.tmp"))


def test_concurrent_updates_lose_no_entry(store: Path) -> None:
    def write(arm: str) -> None:
        for index in range(25):
            update_latest(store, "drift", f"titanic/{index}/{arm}", drift_entry(arm=arm))

    threads = [threading.Thread(target=write, args=(arm,)) for arm in ("primary", "shadow")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_latest(store, "drift")) == 50


def test_unknown_kind_and_corrupt_file(store: Path) -> None:
    with pytest.raises(ValueError, match="unknown job result kind"):
        update_latest(store, "drfit", "k", {})
    path = latest_path(store, "drift")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        read_latest(store, "drift")
    update_latest(store, "drift", "titanic/2/primary", drift_entry())  # replaces it
    assert list(read_latest(store, "drift")) == ["titanic/2/primary"]


def test_collector_exports_drift_and_importance_gauges(store: Path) -> None:
    update_latest(store, "drift", "titanic/2/primary", drift_entry())
    update_latest(
        store,
        "explain",
        "titanic/2",
        {
            "model": "titanic",
            "version": "2",
            "timestamp": NOW.isoformat(),
            "report": None,
            "features": [{"feature": "age", "importance": 0.31}],
        },
    )
    samples = scrape(collector_at_now(store))

    sex = labels(model="titanic", version="2", arm="primary", feature="sex", test="chi_square")
    age = labels(model="titanic", version="2", arm="primary", feature="age", test="ks")
    run = labels(model="titanic", version="2", arm="primary")
    assert samples[("driftgate_drift_score", sex)] == pytest.approx(181.7)
    assert samples[("driftgate_drift_detected", sex)] == 1.0
    assert samples[("driftgate_drift_detected", age)] == 0.0
    assert samples[("driftgate_drift_last_run_timestamp_seconds", run)] == pytest.approx(
        (NOW - timedelta(hours=1)).timestamp()
    )
    assert samples[("driftgate_drift_window_rows", run)] == 505
    importance = labels(model="titanic", version="2", feature="age")
    assert samples[("driftgate_feature_importance", importance)] == pytest.approx(0.31)


def test_null_score_is_nan_and_duplicate_series_are_exported_once(store: Path) -> None:
    entry = drift_entry(score=None)
    entry["features"].append(dict(entry["features"][0]))  # same labels again
    update_latest(store, "drift", "titanic/2/primary", entry)
    samples = scrape(collector_at_now(store))
    scores = [v for (name, _), v in samples.items() if name == "driftgate_drift_score"]
    assert len(scores) == 2
    sex = labels(model="titanic", version="2", arm="primary", feature="sex", test="chi_square")
    assert math.isnan(samples[("driftgate_drift_score", sex)])


def test_old_entries_are_not_exported(store: Path) -> None:
    update_latest(store, "drift", "titanic/2/primary", drift_entry())
    update_latest(
        store, "drift", "titanic/1/shadow", drift_entry(arm="shadow", age=timedelta(days=2))
    )
    samples = scrape(collector_at_now(store, max_age_s=86400))
    arms = {dict(key)["arm"] for name, key in samples if name.startswith("driftgate_drift")}
    assert arms == {"primary"}


def test_missing_or_corrupt_files_export_nothing_and_warn_once(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collector = collector_at_now(store)
    assert scrape(collector) == {}

    path = latest_path(store, "drift")
    path.parent.mkdir(parents=True)
    path.write_text('{"titanic/2/primary": [1, 2]}')
    with caplog.at_level(logging.WARNING, logger="monitoring.job_results"):
        assert scrape(collector) == {}
        assert scrape(collector) == {}
    assert len(caplog.records) == 1
    assert "ignoring latest job results" in caplog.records[0].getMessage()


def test_malformed_entry_is_skipped_and_the_others_exported(store: Path) -> None:
    update_latest(store, "drift", "titanic/2/primary", drift_entry())
    update_latest(store, "drift", "broken", {"model": "x", "features": "nope"})
    samples = scrape(collector_at_now(store))
    assert {dict(key)["model"] for _, key in samples} == {"titanic"}


def test_scrape_reparses_only_when_the_file_changes(store: Path) -> None:
    update_latest(store, "drift", "titanic/2/primary", drift_entry())
    collector = collector_at_now(store)
    sex = labels(model="titanic", version="2", arm="primary", feature="sex", test="chi_square")
    assert scrape(collector)[("driftgate_drift_score", sex)] == pytest.approx(181.7)

    # Same size and mtime: the cached parse is used, so the edit is not seen.
    path = latest_path(store, "drift")
    before = path.stat()
    path.write_text(path.read_text().replace("181.7", "999.9"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert scrape(collector)[("driftgate_drift_score", sex)] == pytest.approx(181.7)

    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert scrape(collector)[("driftgate_drift_score", sex)] == pytest.approx(999.9)


def test_describe_names_the_families_without_reading_files(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = latest_path(store, "drift")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    collector = collector_at_now(store)
    described = list(collector.describe())
    assert {f.name for f in described} == {
        "driftgate_drift_score",
        "driftgate_drift_detected",
        "driftgate_drift_last_run_timestamp_seconds",
        "driftgate_drift_window_rows",
        "driftgate_feature_importance",
    }
    assert all(not f.samples for f in described)
    with caplog.at_level(logging.WARNING, logger="monitoring.job_results"):
        CollectorRegistry(auto_describe=True).register(collector)
    assert caplog.records == []  # a read of the corrupt file would have warned
