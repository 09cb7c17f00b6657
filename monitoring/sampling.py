"""Which requests the prediction log keeps: a pure, stable decision by request id.

The sampler (TF Serving's split: sampler decides, collector stores) hashes the request id,
so the primary and shadow records of one request are kept or dropped together, and a
request retried through another gateway replica gets the same decision. Errors and
shadowed requests are always kept: they are what on-call and the shadow comparison need.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

_SPACE = float(1 << 64)


def hash_fraction(request_id: str) -> float:
    """A stable point in [0, 1) for a request id."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8, person=b"dg-sample").digest()
    return int.from_bytes(digest, "big") / _SPACE


@dataclass(frozen=True)
class SamplingPolicy:
    default_rate: float = 1.0
    route_rates: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for where, rate in [("default", self.default_rate), *self.route_rates.items()]:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"log.sampling.{where}: a rate between 0 and 1, got {rate}")

    def rate(self, route: str) -> float:
        return self.route_rates.get(route, self.default_rate)

    def keep(self, route: str, request_id: str, *, status: int, shadowed: bool) -> bool:
        if status >= 400 or shadowed:
            return True
        rate = self.rate(route)
        return rate >= 1.0 or (rate > 0.0 and hash_fraction(request_id) < rate)
