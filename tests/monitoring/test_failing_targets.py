"""The gauge of the targets (model versions) a job's latest run could not handle."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from monitoring.failing_targets import FailingTargets


def test_failing_targets_show_the_latest_run_and_forget_targets_it_no_longer_met() -> None:
    registry = CollectorRegistry()
    failing = FailingTargets("driftgate_test_failing", "Test.", ["model", "version"], registry)

    def value(version: str) -> float | None:
        labels = {"model": "titanic", "version": version}
        return registry.get_sample_value("driftgate_test_failing", labels)

    failing.record({("titanic", "1"): False, ("titanic", "2"): True})
    assert (value("1"), value("2")) == (0.0, 1.0)
    # Version 1 got no traffic since: its series goes, and version 2 works again.
    failing.record({("titanic", "2"): False})
    assert (value("1"), value("2")) == (None, 0.0)
