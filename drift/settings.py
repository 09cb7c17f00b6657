"""The ``drift:`` section of gateway.yaml: what the drift job checks, how often, how strictly.

```yaml
drift:
  models: models              # the model repository: reference profiles live beside versions
  interval_s: 60              # one run over every model version that had traffic
  window: {rows: 5000}        # the last N logged rows, or {last_s: 3600}: the last hour
  min_rows: 200               # a smaller window gives no verdict (too noisy to judge)
  lookback_s: 86400           # model versions with rows this recent are checked
  auto_reference_rows: 1000   # no profile yet: build one from the first N logged rows (0: never)
  alpha: 0.05                 # false-alarm rate per model version and window, all tests together
  small_sample: 1000          # up to this many rows: KS / chi-square; above: Wasserstein / JS
  rounds: 200                 # resampling rounds that calibrate thresholds on the reference
  min_effect: {wasserstein: 0.1, jensen_shannon: 0.05, psi: 0.1}
  statistics: {}              # force a test per kind, e.g. {numeric: psi}
  multivariate: true          # the joint PCA reconstruction-error test
  min_labels: 100             # labelled rows needed before realised performance is judged
  external_url: http://127.0.0.1:8000   # how alerts and reports link back to the gateway
  webhook: null               # an Alertmanager-style webhook URL for direct alerts
  keep_reports: 200           # HTML reports kept per model version
  run_timeout_s: null         # a run is stopped after this long (null: 1 h, or interval_s)
```

Relative paths resolve against gateway.yaml's folder. Every key is optional. Durations
are positive and finite (no ``.nan``/``.inf``); counts may not be negative; ``min_rows``
is at most ``window.rows``; ``min_effect`` names known statistics, and is below 1 for
those that never exceed 1 (``jensen_shannon``, ``missing_share``, and the effect sizes
floored for ``ks`` and ``chi_square``: D and Cramer's V); ``webhook`` and
``external_url`` are http(s) URLs; ``run_timeout_s``, when set, is positive and finite.
Whether the ``models`` folder exists is checked when the jobs start (``driftgate.jobs``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from drift.stats import STATISTICS
from drift.verdict import TestSettings
from monitoring.jobs import default_time_limit

_STATISTICS = {"psi", "jensen_shannon", "wasserstein", "ks", "chi_square"}
#: What ``min_effect`` may floor: every calibrated statistic and the missing-value share
#: (``drift.missing.STATISTIC``).
_EFFECT_SIZES = _STATISTICS | {"missing_share"}
#: Effect sizes that never exceed 1: a floor of 1 or more would never let them drift
#: (for ``ks`` the floor is on its D, for ``chi_square`` on Cramer's V: ``drift.calibration``).
_AT_MOST_ONE = {"jensen_shannon", "missing_share", "ks", "chi_square"}


def check_positive_finite(value: float, where: str) -> None:
    """A duration or size that must be > 0 and finite: NaN compares false to everything, so
    a NaN interval would never come round again, and silently."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: expected a positive finite number, got {value!r}")


def check_at_least(value: int, minimum: int, where: str) -> None:
    if value < minimum:
        raise ValueError(f"{where}: expected a whole number >= {minimum}, got {value!r}")


def check_window_fits(window: WindowSettings, min_rows: int, section: str) -> None:
    """A count window smaller than ``min_rows`` never holds enough rows: every run would
    skip every model version, saying so only in an INFO line."""
    if window.rows is not None and min_rows > window.rows:
        raise ValueError(
            f"{section}.min_rows: expected at most window.rows ({window.rows}), got "
            f"{min_rows}: no window would ever have enough rows; lower min_rows or raise "
            "window.rows"
        )


def check_http_url(value: str, where: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{where}: expected an http:// or https:// URL, got {value!r}")


class WindowSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rows: int | None = None
    last_s: float | None = None

    def __post_init__(self) -> None:
        if (self.rows is None) == (self.last_s is None):
            raise ValueError("drift.window: give exactly one of rows or last_s")
        if self.rows is not None:
            check_at_least(self.rows, 1, "window.rows")
        if self.last_s is not None:
            check_positive_finite(self.last_s, "window.last_s")


class DriftSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    models: str = "models"
    interval_s: float = 60.0
    window: WindowSettings = WindowSettings(rows=5000)
    min_rows: int = 200
    lookback_s: float = 86400.0
    auto_reference_rows: int = 1000
    alpha: float = 0.05
    small_sample: int = 1000
    rounds: int = 200
    min_effect: dict[str, float] = msgspec.field(
        default_factory=lambda: {"wasserstein": 0.1, "jensen_shannon": 0.05, "psi": 0.1}
    )
    statistics: dict[str, str] = msgspec.field(default_factory=dict)
    multivariate: bool = True
    min_labels: int = 100
    external_url: str = "http://127.0.0.1:8000"
    webhook: str | None = None
    keep_reports: int = 200
    enabled: bool = True
    run_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"drift.alpha must be in (0, 1), got {self.alpha}")
        for name in ("interval_s", "lookback_s"):
            check_positive_finite(getattr(self, name), f"drift.{name}")
        if self.run_timeout_s is not None:
            check_positive_finite(self.run_timeout_s, "drift.run_timeout_s")
        for name in ("min_rows", "rounds", "keep_reports", "min_labels"):
            check_at_least(getattr(self, name), 1, f"drift.{name}")
        for name in ("small_sample", "auto_reference_rows"):
            check_at_least(getattr(self, name), 0, f"drift.{name}")
        check_window_fits(self.window, self.min_rows, "drift")
        for statistic, effect in self.min_effect.items():
            if statistic not in _EFFECT_SIZES:
                raise ValueError(
                    f"drift.min_effect: {statistic!r} is not one of "
                    f"{', '.join(sorted(_EFFECT_SIZES))}"
                )
            if not (math.isfinite(effect) and effect >= 0):
                raise ValueError(
                    f"drift.min_effect.{statistic}: expected a finite number >= 0, got {effect!r}"
                )
            if statistic in _AT_MOST_ONE and effect >= 1:
                raise ValueError(
                    f"drift.min_effect.{statistic}: expected a number below 1, got {effect!r}: "
                    f"{statistic} is at most 1, so it could never drift"
                )
        check_http_url(self.external_url, "drift.external_url")
        if self.webhook is not None:
            check_http_url(self.webhook, "drift.webhook")
        for kind, statistic in self.statistics.items():
            if kind not in ("numeric", "categorical") or statistic not in _STATISTICS:
                raise ValueError(
                    f"drift.statistics: {kind}: {statistic} is not one of "
                    f"numeric|categorical: {', '.join(sorted(_STATISTICS))}"
                )
            if kind not in STATISTICS[statistic].kinds:
                fitting = sorted(name for name, s in STATISTICS.items() if kind in s.kinds)
                raise ValueError(
                    f"drift.statistics.{kind}: {statistic} does not compare {kind} features; "
                    f"use one of {', '.join(fitting)}"
                )

    def tests(self) -> TestSettings:
        return TestSettings(
            alpha=self.alpha,
            small_sample=self.small_sample,
            rounds=self.rounds,
            min_effect=dict(self.min_effect),
            statistics=dict(self.statistics),
        )

    def repository(self, base: Path) -> Path:
        return (base / self.models).resolve()

    def run_limit_s(self) -> float:
        """How long one run may take before it is stopped (``JobScheduler.add``'s
        ``timeout_s``): ``run_timeout_s``, or an hour, or ``interval_s`` when longer."""
        if self.run_timeout_s is not None:
            return self.run_timeout_s
        return default_time_limit(self.interval_s)


def parse_drift_section(raw: Any) -> DriftSettings:
    """``drift:`` as settings; raises ValueError naming the key that is wrong."""
    if raw is None:
        return DriftSettings()
    if not isinstance(raw, Mapping):
        raise ValueError("drift: expected a mapping")
    try:
        return msgspec.convert(dict(raw), DriftSettings)
    except msgspec.ValidationError as exc:
        raise ValueError(f"drift: {exc}") from None
