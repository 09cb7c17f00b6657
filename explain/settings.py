"""The ``explain:`` section of gateway.yaml: what the explain job computes, how often, how much.

```yaml
explain:
  models: models              # the model repository: reference profiles live beside versions
  interval_s: 300             # one run over every model version that had traffic
  lookback_s: 86400           # model versions with rows this recent are explained
  window: {rows: 2000}        # the last N logged rows, or {last_s: 3600}: the last hour
  rows: 200                   # rows sampled from the window and explained
  min_rows: 50                # a smaller window is not explained; labelled rows needed
                              # before permutation importance is scored by accuracy
  methods: [permutation, kernel_shap]   # the first one is exported as the gauge
  background_rows: 30         # Kernel SHAP background, sampled from the reference profile
  n_samples: 256              # Kernel SHAP coalitions per row (exact when all fit)
  repeats: 5                  # permutation shuffles per feature
  time_limit_s: 30            # wall-clock budget of one run, every model version together
  output: null                # the explained output (null: the first floating-point one)
  index: null                 # its column when it has several (null: the last one)
  keep_reports: 100           # HTML reports kept per model version
  run_timeout_s: null         # a run is stopped after this long (null: the longest of 1 h,
                              # interval_s and twice time_limit_s)
```

Relative paths resolve against gateway.yaml's folder. Durations are positive and finite,
counts at least 1, ``min_rows`` at most ``window.rows``, ``index`` at least 0 (a column;
null: the last one), ``run_timeout_s`` more than ``time_limit_s`` (a budget the run may
overrun, where ``run_timeout_s`` stops it). An ``output`` the model lacks fails that
version's run, naming the outputs it has. An ``n_samples`` too few for a model's inputs is
raised for that model, with a warning (the input count is known only when the job runs).
Every key is optional; the job runs when the ``log:`` section exists unless ``enabled:
false``. ``driftgate jobs`` reads the section (``driftgate.jobs``); the job itself is
``explain.job.ExplainJob``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from drift.settings import (
    WindowSettings,
    check_at_least,
    check_positive_finite,
    check_window_fits,
)
from monitoring.jobs import default_time_limit

#: The global-importance methods the job knows.
METHODS = ("permutation", "kernel_shap")


class ExplainJobSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    models: str = "models"
    interval_s: float = 300.0
    lookback_s: float = 86400.0
    window: WindowSettings = WindowSettings(rows=2000)
    rows: int = 200
    min_rows: int = 50
    methods: list[str] = msgspec.field(default_factory=lambda: list(METHODS))
    background_rows: int = 30
    n_samples: int = 256
    repeats: int = 5
    time_limit_s: float = 30.0
    output: str | None = None
    index: int | None = None
    keep_reports: int = 100
    run_timeout_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("interval_s", "lookback_s", "time_limit_s"):
            check_positive_finite(getattr(self, name), f"explain.{name}")
        if self.run_timeout_s is not None:
            check_positive_finite(self.run_timeout_s, "explain.run_timeout_s")
            if self.run_timeout_s <= self.time_limit_s:
                raise ValueError(
                    f"explain.run_timeout_s: expected more than time_limit_s "
                    f"({self.time_limit_s:g}), got {self.run_timeout_s:g}: every run would be "
                    "stopped before its budget ran out"
                )
        for name in ("rows", "min_rows", "background_rows", "n_samples", "repeats", "keep_reports"):
            check_at_least(getattr(self, name), 1, f"explain.{name}")
        if self.index is not None:
            check_at_least(self.index, 0, "explain.index")
        if self.output is not None and not self.output:
            raise ValueError("explain.output: expected an output's name or null, got ''")
        if self.rows < 2:
            raise ValueError("explain.rows must be at least 2 (permutation shuffles rows)")
        check_window_fits(self.window, self.min_rows, "explain")
        unknown = [method for method in self.methods if method not in METHODS]
        if unknown or not self.methods:
            raise ValueError(
                f"explain.methods: {unknown or 'an empty list'} is not a list of "
                f"{', '.join(METHODS)}"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"explain.methods lists a method twice: {self.methods}")

    def repository(self, base: Path) -> Path:
        return (base / self.models).resolve()

    def run_limit_s(self) -> float:
        """How long one run may take before it is stopped (``JobScheduler.add``'s
        ``timeout_s``): ``run_timeout_s``, or the longest of an hour, ``interval_s`` and twice
        ``time_limit_s`` (a budget that permutation, reading and publishing may overrun)."""
        if self.run_timeout_s is not None:
            return self.run_timeout_s
        return max(default_time_limit(self.interval_s), 2 * self.time_limit_s)


def parse_explain_section(raw: Any) -> ExplainJobSettings:
    """``explain:`` as settings; raises ValueError naming the key that is wrong."""
    if raw is None:
        return ExplainJobSettings()
    if not isinstance(raw, Mapping):
        raise ValueError("explain: expected a mapping")
    try:
        return msgspec.convert(dict(raw), ExplainJobSettings)
    except msgspec.ValidationError as exc:
        raise ValueError(f"explain: {exc}") from None
