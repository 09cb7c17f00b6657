"""CircuitBreaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED/OPEN, driven by a fake clock."""

from __future__ import annotations

import pytest

from gateway.circuit import CircuitBreaker, CircuitState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def opened(clock: FakeClock, failures: int = 3, open_s: float = 10.0) -> CircuitBreaker:
    breaker = CircuitBreaker(failures=failures, open_s=open_s)
    for _ in range(failures):
        breaker.record_failure(clock.now)
    assert breaker.state is CircuitState.OPEN
    return breaker


def test_a_new_breaker_is_closed_and_lets_everything_through(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failures=3, open_s=10)
    assert breaker.state is CircuitState.CLOSED
    assert all(breaker.allow(clock.now) for _ in range(100))


def test_it_opens_after_the_configured_consecutive_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failures=3, open_s=10)
    breaker.record_failure(clock.now)
    breaker.record_failure(clock.now)
    assert breaker.consecutive_failures == 2
    assert breaker.allow(clock.now)

    breaker.record_failure(clock.now)

    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow(clock.now)


def test_a_success_in_between_resets_the_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failures=3, open_s=10)
    for outcome in ["fail", "fail", "ok", "fail", "fail"]:
        if outcome == "ok":
            breaker.record_success(clock.now)
        else:
            breaker.record_failure(clock.now)
    assert breaker.state is CircuitState.CLOSED


def test_open_rejects_until_open_s_has_elapsed(clock: FakeClock) -> None:
    breaker = opened(clock, open_s=10)

    assert not breaker.allow(clock.advance(9.99))
    assert breaker.seconds_until_probe(clock.now) == pytest.approx(0.01)
    assert breaker.allow(clock.advance(0.01))
    assert breaker.state is CircuitState.HALF_OPEN


def test_half_open_lets_exactly_one_probe_through(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.advance(10)

    assert [breaker.allow(clock.now) for _ in range(5)] == [True, False, False, False, False]


def test_a_successful_probe_closes_the_circuit(clock: FakeClock) -> None:
    breaker = opened(clock)
    assert breaker.allow(clock.advance(10))

    breaker.record_success(clock.advance(0.2))

    assert breaker.state is CircuitState.CLOSED
    assert all(breaker.allow(clock.now) for _ in range(5))


def test_a_failed_probe_opens_it_again_for_another_open_s(clock: FakeClock) -> None:
    breaker = opened(clock)
    assert breaker.allow(clock.advance(10))

    breaker.record_failure(clock.advance(0.5))

    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow(clock.advance(9.9))
    assert breaker.allow(clock.advance(0.1))


def test_after_closing_it_takes_the_full_count_to_open_again(clock: FakeClock) -> None:
    breaker = opened(clock, failures=3)
    breaker.allow(clock.advance(10))
    breaker.record_success(clock.now)

    breaker.record_failure(clock.now)
    breaker.record_failure(clock.now)
    assert breaker.state is CircuitState.CLOSED


def test_a_probe_that_never_reports_back_is_replaced_after_open_s(clock: FakeClock) -> None:
    breaker = opened(clock, open_s=10)
    assert breaker.allow(clock.advance(10))  # the probe's request is cancelled: no result

    assert not breaker.allow(clock.advance(9))
    assert breaker.allow(clock.advance(1))


def test_late_results_while_open_change_nothing(clock: FakeClock) -> None:
    breaker = opened(clock, open_s=10)
    breaker.record_success(clock.advance(1))  # sent before the circuit opened
    breaker.record_failure(clock.now)

    assert breaker.state is CircuitState.OPEN
    assert breaker.seconds_until_probe(clock.now) == pytest.approx(9)


def test_state_at_shows_what_a_caller_would_see_without_changing_anything(
    clock: FakeClock,
) -> None:
    breaker = opened(clock, open_s=10)

    assert breaker.state_at(clock.now) is CircuitState.OPEN
    assert breaker.state_at(clock.now + 10) is CircuitState.HALF_OPEN
    assert breaker.state is CircuitState.OPEN
    assert breaker.seconds_until_probe(clock.now + 20) == 0.0


def test_states_read_as_metric_labels() -> None:
    assert [str(state) for state in CircuitState] == ["closed", "open", "half_open"]


@pytest.mark.parametrize(
    ("failures", "open_s", "message"),
    [(0, 10.0, "failures: must be >= 1, got 0"), (5, 0.0, "open_s: must be > 0, got 0.0")],
)
def test_settings_are_checked(failures: int, open_s: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(failures=failures, open_s=open_s)
