"""ReplicaSet: least outstanding requests, retries elsewhere, health, passive ejection."""

from __future__ import annotations

import pytest

from gateway.balancer import EjectionSettings, ReplicaSet, ReplicaStatus

A, B, C = "http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"
NOTHING: frozenset[str] = frozenset()

SETTINGS = EjectionSettings(consecutive_failures=3, base_ejection_s=30.0, max_ejection_s=100.0)


def fail(replicas: ReplicaSet, url: str, now: float, times: int | None = None) -> None:
    for _ in range(times or SETTINGS.consecutive_failures):
        replicas.record_failure(url, now)


def picks(replicas: ReplicaSet, now: float, count: int) -> list[str | None]:
    return [replicas.pick(NOTHING, now) for _ in range(count)]


def ejected(replicas: ReplicaSet, now: float) -> set[str]:
    return {status.url for status in replicas.snapshot(now) if status.ejected}


# ---- load balancing ------------------------------------------------------------------------


def test_picks_the_replica_with_the_fewest_outstanding_requests() -> None:
    replicas = ReplicaSet([A, B, C])
    replicas.acquire(A)
    replicas.acquire(A)
    replicas.acquire(B)

    assert replicas.pick(NOTHING, now=0) == C
    replicas.acquire(C)
    replicas.acquire(C)
    assert replicas.pick(NOTHING, now=0) == B


def test_ties_go_round_robin_so_an_idle_pool_still_spreads() -> None:
    replicas = ReplicaSet([A, B, C])
    assert picks(replicas, now=0, count=6) == [A, B, C, A, B, C]


def test_release_makes_a_replica_preferred_again() -> None:
    replicas = ReplicaSet([A, B])
    for url in (A, A, B):
        replicas.acquire(url)
    replicas.release(A)
    replicas.release(A)
    assert replicas.pick(NOTHING, now=0) == A


def test_a_retry_excludes_the_replicas_already_tried() -> None:
    replicas = ReplicaSet([A, B, C])

    assert replicas.pick({A}, now=0) in {B, C}
    assert replicas.pick({A, C}, now=0) == B
    assert replicas.pick({A, B, C}, now=0) is None


def test_an_empty_set_picks_nothing() -> None:
    assert ReplicaSet([]).pick(NOTHING, now=0) is None


def test_release_never_goes_below_zero_and_ignores_removed_replicas() -> None:
    replicas = ReplicaSet([A])
    replicas.release(A)
    replicas.release("http://gone:8000")
    replicas.record_failure("http://gone:8000", now=0)
    replicas.record_success("http://gone:8000")
    replicas.set_health("http://gone:8000", healthy=False)
    assert replicas.snapshot(0)[0].outstanding == 0
    with pytest.raises(KeyError):
        replicas.acquire("http://gone:8000")


# ---- active health -------------------------------------------------------------------------


def test_unhealthy_replicas_get_no_traffic_until_healthy_again() -> None:
    replicas = ReplicaSet([A, B])
    replicas.set_health(A, healthy=False)
    assert set(picks(replicas, now=0, count=4)) == {B}

    replicas.set_health(A, healthy=True)
    assert set(picks(replicas, now=0, count=4)) == {A, B}


def test_a_retry_does_not_fall_back_to_an_unhealthy_replica_while_others_are_fine() -> None:
    replicas = ReplicaSet([A, B])
    replicas.set_health(B, healthy=False)
    assert replicas.pick({A}, now=0) is None


def test_when_nothing_is_healthy_it_still_tries_rather_than_refusing() -> None:
    replicas = ReplicaSet([A, B])
    replicas.set_health(A, healthy=False)
    replicas.set_health(B, healthy=False)

    assert set(picks(replicas, now=0, count=4)) == {A, B}  # panic mode spreads over all
    assert replicas.pick({A}, now=0) == B


# ---- passive ejection ----------------------------------------------------------------------


def test_consecutive_failures_eject_a_replica_for_the_base_time() -> None:
    replicas = ReplicaSet([A, B], SETTINGS)
    fail(replicas, A, now=100, times=2)
    assert ejected(replicas, now=100) == set()

    replicas.record_failure(A, now=100)

    assert ejected(replicas, now=100) == {A}
    assert set(picks(replicas, now=100, count=4)) == {B}
    assert ejected(replicas, now=129.9) == {A}
    assert ejected(replicas, now=130) == set()
    assert set(picks(replicas, now=130, count=4)) == {A, B}


def test_a_success_resets_the_failure_count() -> None:
    replicas = ReplicaSet([A, B], SETTINGS)
    fail(replicas, A, now=0, times=2)
    replicas.record_success(A)
    fail(replicas, A, now=0, times=2)
    assert ejected(replicas, now=0) == set()


def test_repeated_ejections_double_up_to_the_maximum() -> None:
    replicas = ReplicaSet([A, B], SETTINGS)
    now = 0.0
    durations = []
    for _ in range(4):
        fail(replicas, A, now)
        until = replicas.snapshot(now)[0].ejected_until
        assert until is not None
        durations.append(until - now)
        now = until  # it comes back and fails again straight away

    assert durations == [30.0, 60.0, 100.0, 100.0]


def test_a_replica_that_behaves_for_max_ejection_time_starts_again_from_the_base() -> None:
    replicas = ReplicaSet([A, B], SETTINGS)
    fail(replicas, A, now=0)  # ejected until 30
    fail(replicas, A, now=30 + SETTINGS.max_ejection_s)

    assert replicas.snapshot(130)[0].ejected_until == 130 + 30


def test_the_last_available_replica_is_never_ejected() -> None:
    replicas = ReplicaSet([A, B, C], SETTINGS)
    fail(replicas, A, now=0)
    fail(replicas, B, now=0)
    fail(replicas, C, now=0, times=10)

    assert ejected(replicas, now=0) == {A, B}
    assert picks(replicas, now=0, count=3) == [C, C, C]
    assert replicas.snapshot(0)[2].consecutive_failures == 10  # still counted, for the admin


def test_an_unhealthy_replica_does_not_count_as_available_when_ejecting() -> None:
    replicas = ReplicaSet([A, B], SETTINGS)
    replicas.set_health(B, healthy=False)
    fail(replicas, A, now=0)
    assert ejected(replicas, now=0) == set()  # A is the only one serving


def test_when_every_replica_is_out_the_least_bad_is_tried() -> None:
    replicas = ReplicaSet([A, B, C], SETTINGS)
    fail(replicas, A, now=0)
    fail(replicas, B, now=0)
    replicas.set_health(C, healthy=False)  # C, the last one standing, fails its health check

    # A and B are ejected but passed their health checks: better bets than C.
    assert set(picks(replicas, now=0, count=4)) == {A, B}


def test_failures_while_ejected_do_not_extend_the_ejection() -> None:
    replicas = ReplicaSet([A, B], SETTINGS)
    fail(replicas, A, now=0)
    fail(replicas, A, now=10)  # late answers from requests sent before the ejection
    assert replicas.snapshot(10)[0].ejected_until == 30


# ---- membership and reporting --------------------------------------------------------------


def test_replacing_the_replica_list_keeps_the_state_of_known_replicas() -> None:
    replicas = ReplicaSet([A, B], SETTINGS)
    replicas.acquire(A)
    fail(replicas, B, now=0)

    replicas.set_replicas([B, C])

    assert replicas.urls == (B, C)
    assert ejected(replicas, now=0) == {B}
    assert replicas.pick(NOTHING, now=0) == C
    replicas.release(A)  # a request to a removed replica finishing late is harmless


def test_snapshot_reports_each_replica() -> None:
    replicas = ReplicaSet([A, B], SETTINGS)
    replicas.acquire(A)
    fail(replicas, B, now=5)
    replicas.set_health(A, healthy=False)

    assert replicas.snapshot(now=10) == (
        ReplicaStatus(
            url=A,
            healthy=False,
            ejected=False,
            ejected_until=None,
            outstanding=1,
            consecutive_failures=0,
        ),
        ReplicaStatus(
            url=B,
            healthy=True,
            ejected=True,
            ejected_until=35.0,
            outstanding=0,
            consecutive_failures=0,
        ),
    )


def test_two_sets_share_nothing() -> None:
    first, second = ReplicaSet([A, B], SETTINGS), ReplicaSet([A, B], SETTINGS)
    fail(first, A, now=0)
    assert ejected(second, now=0) == set()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"consecutive_failures": 0}, "consecutive_failures: must be >= 1, got 0"),
        ({"base_ejection_s": 0}, "base_ejection_s: must be > 0, got 0"),
        ({"base_ejection_s": 60, "max_ejection_s": 30}, "max_ejection_s: must be >= base"),
    ],
)
def test_ejection_settings_are_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EjectionSettings(**kwargs)  # type: ignore[arg-type]
