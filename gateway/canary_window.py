"""What one arm of a canary route's requests looked like since its current step began."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

#: Latencies kept per arm and step for the p90 (the most recent ones).
LATENCIES_KEPT = 5000


@dataclass
class ArmWindow:
    requests: int = 0
    failures: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))

    @classmethod
    def unbounded(cls) -> ArmWindow:
        """A window that keeps every latency (the sum of several gateways' windows)."""
        return cls(latencies=deque())

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def p90(self) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]

    def plus(self, other: ArmWindow | None) -> ArmWindow:
        """This window and ``other`` added up (``self`` when there is no other)."""
        if other is None or not other.requests:
            return self
        total = ArmWindow.unbounded()
        for window in (self, other):
            total.requests += window.requests
            total.failures += window.failures
            total.latencies.extend(window.latencies)
        return total
