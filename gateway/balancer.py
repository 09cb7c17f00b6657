"""Replica selection for one pool of runtime replicas, with passive outlier ejection.

Every replica serves the same model repository, so one :class:`ReplicaSet` backs every
route. The dispatcher asks :meth:`ReplicaSet.pick` for a replica, brackets the call with
:meth:`~ReplicaSet.acquire` / :meth:`~ReplicaSet.release`, reports the outcome with
:meth:`~ReplicaSet.record_success` / :meth:`~ReplicaSet.record_failure`, and feeds active
health checks to :meth:`~ReplicaSet.set_health`. No I/O and no clock: ``now`` is passed in
(``time.monotonic()`` in production, a number in tests). Not thread-safe: it lives on the
gateway's single event loop.

Rules:

- **Least outstanding requests** among replicas that are healthy (by active checks; a new
  replica is healthy until a check says otherwise), not ejected and not excluded (the
  replicas a retry has already tried). Ties go round-robin, so an idle pool still spreads.
- **Passive ejection**, after Envoy's outlier detection: ``consecutive_failures`` failures
  in a row eject a replica for ``base_ejection_s``; an ejection that follows the previous
  one by less than ``max_ejection_s`` lasts twice as long as that one, capped at
  ``max_ejection_s``. The failure count restarts at each ejection.
- **Never eject the last available replica.** The one still standing when all others are
  ejected or unhealthy stays in, however often it fails: a degraded answer beats none.
- **Panic mode.** When no replica is available at all, :meth:`pick` still picks the least
  bad one (healthy before unhealthy, then not ejected, then fewest failures), so a
  flapping health check cannot turn the whole gateway into 503s. ``None`` means only that
  every replica is excluded (or there are none).
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass

import msgspec


class EjectionSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Passive outlier ejection; the defaults are Envoy's."""

    consecutive_failures: int = 5
    base_ejection_s: float = 30.0
    max_ejection_s: float = 300.0

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1:
            raise ValueError(f"consecutive_failures: must be >= 1, got {self.consecutive_failures}")
        if not self.base_ejection_s > 0:
            raise ValueError(f"base_ejection_s: must be > 0, got {self.base_ejection_s}")
        if not self.max_ejection_s >= self.base_ejection_s:
            raise ValueError(
                f"max_ejection_s: must be >= base_ejection_s ({self.base_ejection_s}), "
                f"got {self.max_ejection_s}"
            )


class ReplicaStatus(msgspec.Struct, frozen=True):
    """One replica as metrics and the admin API show it."""

    url: str
    healthy: bool
    ejected: bool
    ejected_until: float | None
    outstanding: int
    consecutive_failures: int


@dataclass(eq=False)  # replicas are compared by identity
class _Replica:
    url: str
    outstanding: int = 0
    healthy: bool = True
    consecutive_failures: int = 0
    ejected_until: float | None = None  # end of the latest ejection, past or present
    ejection_level: int = 0  # 1 for a first ejection, +1 per repeat (doubling the time)

    def ejected(self, now: float) -> bool:
        return self.ejected_until is not None and now < self.ejected_until

    def available(self, now: float) -> bool:
        return self.healthy and not self.ejected(now)


class ReplicaSet:
    """Replica URLs with their load, health and ejection state."""

    def __init__(self, urls: Iterable[str], settings: EjectionSettings | None = None) -> None:
        self.settings = settings or EjectionSettings()
        self._replicas: dict[str, _Replica] = {}
        self._cursor = 0  # where the next round-robin tie-break starts
        self.set_replicas(urls)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self._replicas)

    def set_replicas(self, urls: Iterable[str]) -> None:
        """Replace the replica list (e.g. from DNS discovery); known replicas keep their state."""
        self._replicas = {url: self._replicas.get(url) or _Replica(url) for url in urls}
        self._cursor %= max(len(self._replicas), 1)

    def pick(self, exclude: Set[str], now: float) -> str | None:
        """The replica for the next try, or None when every replica is in ``exclude``."""
        replicas = list(self._replicas.values())
        pool = [i for i, r in enumerate(replicas) if r.url not in exclude and r.available(now)]
        if not pool and not any(r.available(now) for r in replicas):
            # panic: nothing is available, so try the least bad rather than nothing
            candidates = [i for i, r in enumerate(replicas) if r.url not in exclude]
            best = min((_badness(replicas[i], now) for i in candidates), default=None)
            pool = [i for i in candidates if _badness(replicas[i], now) == best]
        if not pool:
            return None
        if len(pool) == 1:
            index = pool[0]
        else:
            lowest = min(replicas[i].outstanding for i in pool)
            tied = [i for i in pool if replicas[i].outstanding == lowest]
            index = min(tied, key=lambda i: (i - self._cursor) % len(replicas))
        self._cursor = (index + 1) % len(replicas)
        return replicas[index].url

    def acquire(self, url: str) -> None:
        """A request to ``url`` started; raises KeyError for a replica not in the set."""
        self._replicas[url].outstanding += 1

    def release(self, url: str) -> None:
        """A request to ``url`` ended; ignored if the replica was removed meanwhile."""
        if replica := self._replicas.get(url):
            replica.outstanding = max(replica.outstanding - 1, 0)

    def record_success(self, url: str) -> None:
        if replica := self._replicas.get(url):
            replica.consecutive_failures = 0

    def record_failure(self, url: str, now: float) -> None:
        """A connection error, timeout or 5xx from ``url``; may eject it (see module doc)."""
        replica = self._replicas.get(url)
        if replica is None or replica.ejected(now):
            return
        replica.consecutive_failures += 1
        if replica.consecutive_failures < self.settings.consecutive_failures:
            return
        others_available = any(
            r.available(now) for r in self._replicas.values() if r is not replica
        )
        if replica.healthy and not others_available:
            return  # the last one standing stays in
        self._eject(replica, now)

    def set_health(self, url: str, healthy: bool) -> None:
        """The result of an active health check."""
        if replica := self._replicas.get(url):
            replica.healthy = healthy

    def snapshot(self, now: float) -> tuple[ReplicaStatus, ...]:
        return tuple(
            ReplicaStatus(
                url=r.url,
                healthy=r.healthy,
                ejected=r.ejected(now),
                ejected_until=r.ejected_until,
                outstanding=r.outstanding,
                consecutive_failures=r.consecutive_failures,
            )
            for r in self._replicas.values()
        )

    def _eject(self, replica: _Replica, now: float) -> None:
        settings = self.settings
        repeat = (
            replica.ejected_until is not None
            and now - replica.ejected_until < settings.max_ejection_s
        )
        replica.ejection_level = replica.ejection_level + 1 if repeat else 1
        duration = settings.base_ejection_s * 2 ** (replica.ejection_level - 1)
        replica.ejected_until = now + min(duration, settings.max_ejection_s)
        replica.consecutive_failures = 0


def _badness(replica: _Replica, now: float) -> tuple[bool, bool, int]:
    return (not replica.healthy, replica.ejected(now), replica.consecutive_failures)
