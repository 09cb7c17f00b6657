"""The drift job in the jobs process (``driftgate jobs``): the metrics that name a version
a good run could not check, a model with nothing to test skipped rather than failed, and
the configuration the process refuses."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drift.profile import build_profile
from drift.references import ReferenceStore
from drift.settings import DriftSettings, parse_drift_section
from driftgate.jobs import JobsConfigError, build_jobs
from tests.cli_logging import root_logging  # noqa: F401  (an autouse fixture)
from tests.drift.job_traffic import damage_profile, traffic, write_iris, write_traffic


def test_the_jobs_metrics_name_the_version_a_successful_run_could_not_check(
    tmp_path: Path, repository: Path
) -> None:
    """A run that checked some versions counts as a good run, so on-call would not see that
    one version's drift is no longer computed: ``driftgate_drift_check_failing`` on the
    jobs process's /metrics says which (alert DriftgateDriftCheckFailing)."""
    damage_profile(repository, "2")
    store, now = tmp_path / "store", datetime.now(UTC)
    write_traffic(store, traffic(2000, seed=9), "1", now - timedelta(minutes=5))
    write_traffic(store, traffic(2000, seed=10), "2", now - timedelta(minutes=5))
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "auth: {enabled: false}\nlog: {store: store}\n"
        "drift: {window: {rows: 2000}, min_rows: 500}\n"
    )
    process = build_jobs(config, only=["drift"])
    (job,) = process.scheduler.jobs

    def failing(version: str) -> float | None:
        labels = {"model": "titanic", "version": version, "arm": "a"}
        return process.registry.get_sample_value("driftgate_drift_check_failing", labels)

    assert process.scheduler.run_once(job)
    assert (failing("1"), failing("2")) == (0.0, 1.0)
    assert process.registry.get_sample_value(
        "driftgate_job_runs_total", {"job": "drift", "outcome": "ok"}
    )

    ReferenceStore(repository).save(build_profile("titanic", "2", traffic(2000, 11), "test"))
    assert process.scheduler.run_once(job)
    assert (failing("1"), failing("2")) == (0.0, 0.0)


def test_a_model_logging_only_lists_is_skipped_not_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The demo's iris logs a list of 4 floats in and a list of 3 out. Its reference from
    the log took every model's columns of the view, titanic's all NULL in iris's rows, and
    failed naming them: once iris alone had recent traffic every run failed."""
    store, now = tmp_path / "store", datetime.now(UTC)
    (tmp_path / "models").mkdir()
    write_traffic(store, traffic(600, seed=12), "1", now - timedelta(days=3))  # not recent
    write_iris(store, 600, now - timedelta(minutes=5))
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "auth: {enabled: false}\nlog: {store: store}\n"
        "drift: {window: {rows: 500}, min_rows: 100, auto_reference_rows: 200}\n"
    )
    process = build_jobs(config, only=["drift"])
    (job,) = process.scheduler.jobs

    with caplog.at_level(logging.INFO, logger="driftgate.drift"):
        assert process.scheduler.run_once(job)

    def runs(outcome: str) -> float | None:
        labels = {"job": "drift", "outcome": outcome}
        return process.registry.get_sample_value("driftgate_job_runs_total", labels)

    assert (runs("ok"), runs("error")) == (1.0, None)
    failing = {"model": "iris", "version": "1", "arm": "a"}
    assert process.registry.get_sample_value("driftgate_drift_check_failing", failing) == 0.0
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert skipped == [
        "skipped iris/1 arm a: nothing to test (its values are all in list columns, which "
        "drift does not test: in_features, out_probabilities)"
    ]
    assert skipped[0] in (Path(__file__).parents[2] / "docs" / "drift.md").read_text()
    assert not ReferenceStore(tmp_path / "models").history("iris", "1")


def test_settings_name_the_wrong_key() -> None:
    assert parse_drift_section(None) == DriftSettings()
    with pytest.raises(ValueError, match="alpah"):
        parse_drift_section({"alpah": 0.1})
    with pytest.raises(ValueError, match="exactly one of rows or last_s"):
        parse_drift_section({"window": {"rows": 10, "last_s": 60}})
    with pytest.raises(ValueError, match="numeric"):
        parse_drift_section({"statistics": {"numeric": "t_test"}})


def test_the_jobs_process_needs_a_log(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\ndrift: {interval_s: 5}\n")
    with pytest.raises(JobsConfigError, match="no `log:` section"):
        build_jobs(config)
    config.write_text("auth: {enabled: false}\nlog: {store: store}\ndrift: {window: {}}\n")
    with pytest.raises(JobsConfigError, match="drift"):
        build_jobs(config)
    config.write_text("auth: {enabled: false}\nlog: {store: store}\n")
    assert "drift" in build_jobs(config, log_upkeep=True).names
