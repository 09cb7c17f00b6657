"""What one drift job run found for one model version and arm: the value every output
(store rows, gauges, report, alert) is rendered from.

``drift.job`` builds a ``DriftRun``; ``drift.results`` turns it into ``drift_results``
rows and the latest-results file the gauges read, ``drift.report`` into HTML, and
``drift.alerts`` into an Alertmanager-style webhook payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from drift.distributions import Distribution
from drift.verdict import DriftStat

#: Feature names of the tests that are not about one column.
MULTIVARIATE = "__multivariate__"
PERFORMANCE = "__performance__"
SEQUENTIAL = "__sequential__"

FindingKind = Literal["numeric", "categorical", "multivariate", "performance", "sequential"]
FindingRole = Literal["input", "output", "joint", "label"]


@dataclass(frozen=True, slots=True)
class Window:
    """The slice of the log a run looked at: ``kind`` says what bounded it."""

    kind: Literal["time", "count"]
    start: datetime
    end: datetime
    rows: int


@dataclass(frozen=True, slots=True)
class FeatureFinding:
    """One test on one feature (``feature`` is the column without its ``in_``/``out_``
    prefix; ``column`` is the store's column) or a joint test (``MULTIVARIATE`` etc.).

    ``reference`` / ``current`` are the compared distributions (for plots), None for the
    joint tests. ``psi`` is reported beside every per-feature test for comparison with
    other tools; it does not decide ``result.drifted``.
    """

    feature: str
    column: str
    kind: FindingKind
    role: FindingRole
    result: DriftStat
    psi: float | None = None
    reference: Distribution | None = None
    current: Distribution | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DriftRun:
    """One model version's (and arm's) drift check over one window.

    ``sql`` reproduces the window's numbers when run in ``driftgate sql``;
    ``report`` is the report's URL path (``/reports/drift/...``) once written.
    """

    run_id: str
    timestamp: datetime
    model: str
    version: str
    arm: str
    window: Window
    reference_id: str
    reference_rows: int
    findings: tuple[FeatureFinding, ...]
    sql: str
    report: str | None = None

    @property
    def drifted(self) -> tuple[FeatureFinding, ...]:
        return tuple(f for f in self.findings if f.result.drifted)
