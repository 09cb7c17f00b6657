"""A circuit breaker per target (model and version), so a failing target is skipped fast.

The dispatcher keeps one :class:`CircuitBreaker` per :class:`~gateway.policy.Target` of a
route, built from the route's ``circuit_breaker`` settings. Before trying a target it asks
:meth:`~CircuitBreaker.allow`; a refusal sends the request straight to the next target of
the plan (the fallback chain). After the try (retries on other replicas included) it
reports :meth:`~CircuitBreaker.record_success` or :meth:`~CircuitBreaker.record_failure`.

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

Shadows (``gateway.shadow``) go to the same targets, and their failures count too: a target
that only ever receives mirrored traffic, and fails all of it, must stop receiving it. But
a shadow answers no client, so it asks :meth:`~CircuitBreaker.allow_shadow`, never
:meth:`~CircuitBreaker.allow`: while HALF_OPEN it gets a probe slot of its own, one shadow
at a time, and never takes the probe a client request would go through. Whichever probe
reports first closes or reopens the breaker.
"""

from __future__ import annotations

from enum import StrEnum


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
        self._shadow_probe_started: float | None = None

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

    def allow_shadow(self, now: float) -> bool:
        """Whether a shadow (a mirrored copy no client waits for) may go to the target now.

        CLOSED: True; OPEN: False; HALF_OPEN: True once per shadow probe, a slot apart from
        the client's: a client request is never sent down the fallback chain (or refused)
        because a shadow holds the probe, and a target only shadows reach still gets
        probed. A shadow probe that never reports back is replaced after ``open_s``.
        """
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.OPEN:
            if now - self._opened_at < self.open_s:
                return False
            self._state = CircuitState.HALF_OPEN
            self._probe_started = None
        started = self._shadow_probe_started
        if started is None or now - started >= self.open_s:
            self._shadow_probe_started = now
            return True
        return False

    def record_success(self, now: float) -> None:
        if self._state is CircuitState.OPEN:
            return
        self._state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self._probe_started = None
        self._shadow_probe_started = None

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
        self._shadow_probe_started = None
