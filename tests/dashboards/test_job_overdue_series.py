"""The series alert DriftgateJobOverdue reads are the ones a job scheduler exports.

The alert waits for a run under way within its time limit (which ``drift.run_timeout_s``
and ``explain.run_timeout_s`` can set above an hour), so the limit must be on /metrics next
to the interval; promtool's cases (dashboards/prometheus/tests/) check the rule itself.
"""

from __future__ import annotations

import re

from opentelemetry.trace import NoOpTracer

from monitoring.jobs import JobScheduler
from monitoring.metrics import new_registry
from tests.dashboards.artifacts import alert_rules


def overdue_expr() -> str:
    (rule,) = [r for r in alert_rules() if r["alert"] == "DriftgateJobOverdue"]
    return str(rule["expr"])


def test_every_series_the_alert_reads_is_exported_from_the_job_s_registration() -> None:
    registry = new_registry()
    jobs = JobScheduler(registry, NoOpTracer())
    jobs.add("drift", 600, lambda: None, timeout_s=4 * 3600)
    exported = {metric.name for metric in registry.collect()} | {
        sample.name for metric in registry.collect() for sample in metric.samples
    }
    read = set(re.findall(r"\b(?:driftgate|process)_[a-z_]+\b", overdue_expr()))
    assert "driftgate_job_time_limit_seconds" in read
    assert read <= exported, f"read by the alert, not exported: {sorted(read - exported)}"


def test_the_time_limit_is_the_job_s_own_or_its_default() -> None:
    registry = new_registry()
    jobs = JobScheduler(registry, NoOpTracer())
    jobs.add("drift", 600, lambda: None, timeout_s=4 * 3600)
    jobs.add("explain", 7200, lambda: None)  # default: an hour, or the interval when longer
    jobs.add("log_upkeep", 300, lambda: None)

    def limit(job: str) -> float | None:
        return registry.get_sample_value("driftgate_job_time_limit_seconds", {"job": job})

    assert limit("drift") == 4 * 3600
    assert limit("explain") == 7200
    assert limit("log_upkeep") == 3600
