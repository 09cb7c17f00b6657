"""Where a model call runs: on the event loop when it is known to be quick, else in a thread.

Handing a call to the inference threads costs more than a small model takes to answer. On
the demo's titanic pipeline (ONNX, about 0.2 ms a call) the hand-off between the event loop
and a worker thread, and the two threads taking turns at the GIL from different cores,
halved the runtime's throughput (BENCHMARKS.md, "Gateway overhead": the `runtime-pool`
rows, and the reading "The runtime got twice as fast"). So a call that recent calls of the
same version and size say will take at most ``inline_max_s`` runs inline, on the event
loop; anything else, and anything not yet measured, runs in the thread pool, where a slow
model cannot stall the loop (health checks, other models).

The estimate is per backend object (a reload starts afresh) and per batch-size class
(rows rounded down to a power of two), an exponentially weighted mean of the time inside
``backend.predict``. One call counts for at most ``OUTLIER_CAP`` times the limit, so that a
single slow call (the process preempted, a page fault) does not send a quick model to the
pool; calls that stay slow move the mean past the limit within three calls, and their size
class goes back to the pool.
"""

from __future__ import annotations

import weakref
from typing import Literal

Placement = Literal["event_loop", "thread_pool"]
EVENT_LOOP: Placement = "event_loop"
THREAD_POOL: Placement = "thread_pool"

#: Weight of the newest call in the running mean: about the last ten calls count.
NEWEST_CALL_WEIGHT = 0.2
#: No single call counts for more than this many times the limit.
OUTLIER_CAP = 2.0


class CallPlacement:
    """Chooses event loop or thread pool per call, from what calls like it took."""

    def __init__(self, inline_max_s: float) -> None:
        self.inline_max_s = inline_max_s
        self._seconds: weakref.WeakKeyDictionary[object, dict[int, float]] = (
            weakref.WeakKeyDictionary()
        )

    def choose(self, backend: object, rows: int) -> Placement:
        if self.inline_max_s <= 0:
            return THREAD_POOL
        expected = self._seconds.get(backend, {}).get(size_class(rows))
        if expected is None or expected > self.inline_max_s:
            return THREAD_POOL
        return EVENT_LOOP

    def observe(self, backend: object, rows: int, seconds: float) -> None:
        """Record the time one call spent inside the backend."""
        by_size = self._seconds.setdefault(backend, {})
        size = size_class(rows)
        previous = by_size.get(size)
        if previous is None:
            by_size[size] = seconds  # the first call, in the pool: its time as measured
            return
        counted = min(seconds, OUTLIER_CAP * self.inline_max_s) if self.inline_max_s else seconds
        by_size[size] = previous + NEWEST_CALL_WEIGHT * (counted - previous)

    def expected_s(self, backend: object, rows: int) -> float | None:
        """The running mean for calls of this size, if any were measured."""
        return self._seconds.get(backend, {}).get(size_class(rows))


def size_class(rows: int) -> int:
    """0 for no rows, then 1, 2-3, 4-7, ... as 1, 2, 3, ..."""
    return max(rows, 0).bit_length()
