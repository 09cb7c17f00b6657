"""Budgets: plan_rows arithmetic, and a run measured on its first chunk stays under its limit."""

from __future__ import annotations

import numpy as np
import pytest

from explain.attributions import Attribution
from explain.budget import PROBE_ROWS, ExplainBudget, explain_within_budget, plan_rows
from explain.frame import Frame, frame_rows


def test_plan_rows_fills_the_time_left_up_to_max_rows():
    budget = ExplainBudget(max_rows=200, time_limit_s=30.0)
    assert plan_rows(budget, 0.5) == 60
    assert plan_rows(budget, 0.01) == 200
    assert plan_rows(budget, 0.5, elapsed_s=10.0, rows_done=5) == 40
    assert plan_rows(budget, 0.01, elapsed_s=1.0, rows_done=190) == 10
    assert plan_rows(budget, 0.7) == 42  # floor: 42 rows take 29.4 s, 43 would take 30.1 s


def test_plan_rows_never_goes_negative_and_trusts_a_clock_that_saw_nothing():
    budget = ExplainBudget(max_rows=50, time_limit_s=2.0)
    assert plan_rows(budget, 1.0, elapsed_s=3.0) == 0
    assert plan_rows(budget, 1.0, rows_done=80) == 0
    assert plan_rows(budget, 0.0, rows_done=20) == 30


def test_budget_fields_are_validated():
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        ExplainBudget(max_rows=0)
    with pytest.raises(ValueError, match="time_limit_s must be positive"):
        ExplainBudget(time_limit_s=0)


class FakeClock:
    """Time moves only when the fake explainer works: ``seconds_per_row`` per row."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def slow_explainer(clock: FakeClock, seconds_per_row: float, chunks: list[int]):
    def explain(rows: Frame) -> Attribution:
        n_rows = frame_rows(rows)
        chunks.append(n_rows)
        clock.now += seconds_per_row * n_rows
        return Attribution(
            features=("x",),
            values=rows["x"].reshape(-1, 1),
            base_value=0.0,
            predictions=rows["x"].copy(),
            method="fake",
        )

    return explain


def test_a_run_probes_a_small_chunk_then_sizes_the_rest_to_the_time_limit():
    clock, chunks = FakeClock(), list[int]()
    rows = {"x": np.arange(1000, dtype=float)}
    budget = ExplainBudget(max_rows=500, time_limit_s=10.0)
    result = explain_within_budget(slow_explainer(clock, 0.1, chunks), rows, budget, clock=clock)
    assert chunks == [PROBE_ROWS, 32, 21, 42]  # a third of the plan, twice, then the rest
    assert result.values[:, 0].tolist() == list(range(100))
    assert result.detail["rows_explained"] == 100 and result.detail["rows_offered"] == 1000
    assert result.detail["elapsed_s"] == pytest.approx(10.0)


def test_a_fast_model_is_bounded_by_max_rows_and_by_the_rows_offered():
    clock, chunks = FakeClock(), list[int]()
    fast = slow_explainer(clock, 0.001, chunks)
    budget = ExplainBudget(max_rows=50, time_limit_s=10.0)
    explain_within_budget(fast, {"x": np.arange(80, dtype=float)}, budget, clock=clock)
    explain_within_budget(fast, {"x": np.arange(12, dtype=float)}, budget, clock=clock)
    assert chunks == [PROBE_ROWS, 15, 10, 20, PROBE_ROWS, 5, 2]


def test_a_model_that_slows_down_after_the_probe_barely_overruns():
    """The probe says 0.1 s a row, then every row costs 0.3 s: measuring again after each
    chunk stops the run near its limit instead of spending three times it."""
    clock, chunks = FakeClock(), list[int]()
    fast_then_slow = slow_explainer(clock, 0.1, chunks)

    def explain(rows: Frame) -> Attribution:
        if chunks:  # after the probe
            clock.now += 0.2 * frame_rows(rows)
        attribution: Attribution = fast_then_slow(rows)
        return attribution

    budget = ExplainBudget(max_rows=500, time_limit_s=10.0)
    rows = {"x": np.arange(1000, dtype=float)}
    result = explain_within_budget(explain, rows, budget, clock=clock)
    assert result.detail["elapsed_s"] <= 10.0 * 1.1
    assert result.detail["rows_explained"] >= 30
