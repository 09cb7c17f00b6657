"""Which targets (model versions) the latest run of a background job could not handle.

A drift or explain run that handles some model versions succeeds
(``driftgate_job_runs_total{outcome="ok"}``, ``monitoring.job_runner``), so its outcome
cannot say that one version keeps failing: ``FailingTargets`` is the gauge that does,
read by the alerts DriftgateDriftCheckFailing and DriftgateExplainCheckFailing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Gauge


class FailingTargets:
    """Which targets (model versions) the latest run of a job could not handle.

    A gauge with one series per target the latest run met: 1 when it failed there, 0 when
    it handled or skipped it. A target the run no longer meets (its traffic stopped) loses
    its series, so it stops alerting. Targets come from the model repository and the log,
    never from error messages: the labels stay bounded.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        registry: CollectorRegistry | None,
    ) -> None:
        self._gauge = Gauge(name, documentation, list(labels), registry=registry)
        self._met: set[tuple[str, ...]] = set()

    def record(self, failed: Mapping[tuple[str, ...], bool]) -> None:
        """Replace the series with the latest run's: target label values -> it failed."""
        for target in self._met - failed.keys():
            self._gauge.remove(*target)
        for target, failure in failed.items():
            self._gauge.labels(*target).set(1.0 if failure else 0.0)
        self._met = set(failed)
