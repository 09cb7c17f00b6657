"""A circuit breaker per target (model and version), so a failing target is skipped fast.

The dispatcher keeps one :class:`CircuitBreaker` per :class:`~gateway.policy.Target` of a
route, built from the route's ``circuit_breaker`` settings. Before trying a target it asks
:meth:`~CircuitBreaker.allow`; a refusal sends the request straight to the next target of
the plan (the fallback chain). After the try (retries on other replicas included) it
reports :meth:`~CircuitBreaker.record_success` or :meth:`~CircuitBreaker.record_failure`,
or :meth:`~CircuitBreaker.record_neither` when the try said nothing about the target's
health (no replica serves it: a version not deployed is no failing model).

States::

    CLOSED --(failures consecutive failures)--> OPEN
    OPEN --(open_s elapsed, next allow())--> HALF_OPEN: exactly one probe is let through
    HALF_OPEN --probe succeeds--> CLOSED
    HALF_OPEN --probe fails-----> OPEN (for another open_s)

Time is injected (``now``, monotonic seconds); nothing here reads a clock. OPEN turns into
HALF_OPEN lazily, in :meth:`~CircuitBreaker.allow`; :meth:`~CircuitBreaker.state_at` reports
the state a caller at ``now`` would see. Results that arrive while OPEN come from requests
let in before it opened and are ignored. A probe whose result never arrives (the request
was cancelled) would otherwise hold HALF_OPEN forever, so after ``open_s`` without a result
another probe is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable
from enum import StrEnum
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T", bound=Hashable)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a single half-open probe."""

    def __init__(self, failures: int = 5, open_s: float = 10.0) -> None:
        if failures < 1:
            raise ValueError(f"failures: must be >= 1, got {failures}")
        if not open_s > 0:
            raise ValueError(f"open_s: must be > 0, got {open_s}")
        self.failures = failures
        self.open_s = open_s
        self._state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None

    @property
    def state(self) -> CircuitState:
        """The stored state; see :meth:`state_at` for what ``allow`` would see now."""
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a request may go to the target now; in HALF_OPEN, True once per probe."""
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.OPEN:
            if now - self._opened_at < self.open_s:
                return False
            self._state = CircuitState.HALF_OPEN
            self._probe_started = None
        probe_lost = self._probe_started is not None and now - self._probe_started >= self.open_s
        if self._probe_started is None or probe_lost:
            self._probe_started = now
            return True
        return False

    def record_success(self, now: float) -> None:
        if self._state is CircuitState.OPEN:
            return
        self._state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self._probe_started = None

    def record_neither(self) -> None:
        """A try that says nothing of the target's health: nothing counts, but a half-open
        probe it was is over, so the next request may probe (not only after ``open_s``)."""
        if self._state is CircuitState.HALF_OPEN:
            self._probe_started = None

    def record_failure(self, now: float) -> None:
        if self._state is CircuitState.OPEN:
            return
        self.consecutive_failures += 1
        if self._state is CircuitState.HALF_OPEN or self.consecutive_failures >= self.failures:
            self._open(now)

    @property
    def pristine(self) -> bool:
        """Closed with no failure counted: the same as a breaker never made."""
        return self._state is CircuitState.CLOSED and self.consecutive_failures == 0

    def state_at(self, now: float) -> CircuitState:
        """The state without side effects: OPEN reads as HALF_OPEN once ``open_s`` elapsed."""
        if self._state is CircuitState.OPEN and now - self._opened_at >= self.open_s:
            return CircuitState.HALF_OPEN
        return self.state

    def seconds_until_probe(self, now: float) -> float:
        """How long an OPEN breaker keeps refusing (for ``Retry-After``); 0 when not OPEN."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(self._opened_at + self.open_s - now, 0.0)

    def _open(self, now: float) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = now
        self._probe_started = None


#: Breakers a table keeps before it forgets idle ones (``breaker_in``).
MAX_BREAKERS = 1024


def breaker_in(
    breakers: dict[K, CircuitBreaker], key: K, failures: int, open_s: float
) -> CircuitBreaker:
    """``key``'s breaker in ``breakers``, made if need be. Past ``MAX_BREAKERS`` the table
    forgets the breakers that hold no state, then, if still too many, the oldest: keys are
    not bounded by the configuration (a URL's version is the client's choice)."""
    breaker = breakers.get(key)
    if breaker is None:
        if len(breakers) >= MAX_BREAKERS:
            for idle in [k for k, known in breakers.items() if known.pristine]:
                del breakers[idle]
            for oldest in list(breakers)[: max(len(breakers) - MAX_BREAKERS // 2, 0)]:
                del breakers[oldest]
        breaker = breakers[key] = CircuitBreaker(failures, open_s)
    return breaker


def forget_breakers(
    breakers: dict[tuple[str, T], CircuitBreaker],
    routes: Collection[str],
    settings_of: Callable[[str, T], tuple[int, float] | None],
) -> None:
    """After ``routes`` changed: forget their breakers whose target ``settings_of`` answers
    None for (the route names it no more, or has no breakers now); the others keep their
    state and take the ``(failures, open_s)`` it answers. Other routes' are left alone."""
    for key in [key for key in breakers if key[0] in routes]:
        settings = settings_of(*key)
        if settings is None:
            del breakers[key]
        else:
            breakers[key].failures, breakers[key].open_s = settings
