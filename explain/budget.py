"""How much an explain job may spend, and the loop that keeps a run under it.

An explanation's cost is predict calls, and their cost per row depends on the model (an
ONNX logistic regression answers thousands of rows in a millisecond, a TensorFlow network
far fewer), so a job cannot size its work in advance. ``explain_within_budget`` measures
instead: it explains a small first chunk (``PROBE_ROWS``), divides the time taken by the
rows explained, and asks ``plan_rows`` how many more fit in what is left of
``time_limit_s``. It then explains a third of those, measures again, and so on, the last of
``MAX_CHUNKS`` calls taking all that the latest estimate allows. Measuring again matters:
over HTTP on a loaded machine the cost per row moved threefold between calls, and one
estimate from the probe let a run overrun its limit by twice over. A call's time includes
fixed costs (predicting the background for the base value, building coalitions), so
estimates err on the slow side and the run ends early rather than late. A chunk can still
overrun by what its rows cost beyond the estimate; a model too slow for ``PROBE_ROWS`` rows
in ``time_limit_s`` needs a smaller ``n_samples`` or ``background_rows``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from explain.attributions import Attribution, concat_attributions
from explain.frame import Frame, frame_rows, take

#: Rows explained before the cost per row is known.
PROBE_ROWS = 5
#: Explainer calls per run at most (each has fixed costs); all but the last take a third
#: of what the estimate allows, so the estimate is renewed before most of the time is spent.
MAX_CHUNKS = 4


@dataclass(frozen=True)
class ExplainBudget:
    """Limits of one explain run: rows explained, background rows and coalitions per row
    for Kernel SHAP (``kernel_shap(..., n_samples=...)``), and wall-clock seconds."""

    max_rows: int = 200
    background_rows: int = 50
    n_samples: int = 512
    time_limit_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_rows", "background_rows", "n_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"ExplainBudget.{name} must be at least 1")
        if not self.time_limit_s > 0:
            raise ValueError("ExplainBudget.time_limit_s must be positive")


def plan_rows(
    budget: ExplainBudget,
    seconds_per_row_estimate: float,
    *,
    elapsed_s: float = 0.0,
    rows_done: int = 0,
) -> int:
    """How many more rows to explain: what fits in ``time_limit_s - elapsed_s`` at the
    estimated cost, at most ``max_rows - rows_done``, never negative. A non-positive
    estimate (a clock too coarse to see the work) allows every remaining row."""
    rows_left = max(0, budget.max_rows - rows_done)
    if seconds_per_row_estimate <= 0:
        return rows_left
    seconds_left = budget.time_limit_s - elapsed_s
    if seconds_left <= 0:
        return 0
    return min(rows_left, math.floor(seconds_left / seconds_per_row_estimate))


def explain_within_budget(
    explain_rows: Callable[[Frame], Attribution],
    rows: Frame,
    budget: ExplainBudget,
    *,
    clock: Callable[[], float] = time.perf_counter,
    probe_rows: int = PROBE_ROWS,
) -> Attribution:
    """Explain as many of ``rows`` (in order; sample them first) as the budget allows.

    ``explain_rows`` is an explainer with its model and background bound, e.g.
    ``lambda chunk: kernel_shap(predict, chunk, background, n_samples=budget.n_samples)``.
    The result's ``detail`` adds ``rows_offered``, ``rows_explained``, ``elapsed_s`` and
    ``seconds_per_row_estimate``.
    """
    offered = frame_rows(rows)
    started = clock()
    first = take(rows, slice(0, min(probe_rows, budget.max_rows)))
    parts = [explain_rows(first)]
    done = frame_rows(first)
    estimate = 0.0
    while len(parts) < MAX_CHUNKS:
        elapsed = clock() - started
        estimate = elapsed / done if done else 0.0
        more = min(offered - done, plan_rows(budget, estimate, elapsed_s=elapsed, rows_done=done))
        if more <= 0:
            break
        if len(parts) < MAX_CHUNKS - 1 and more > probe_rows:
            more = max(probe_rows, math.ceil(more / 3))
        parts.append(explain_rows(take(rows, slice(done, done + more))))
        done += more
    result = concat_attributions(parts)
    return replace(
        result,
        detail={
            **result.detail,
            "rows_offered": offered,
            "rows_explained": done,
            "elapsed_s": clock() - started,
            "seconds_per_row_estimate": estimate,
        },
    )
