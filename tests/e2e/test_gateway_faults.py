"""Faults injected into a real ``driftgate up``: what the gateway's clients see.

One ``driftgate up`` (gateway in-process, two supervised runtime replicas) serves the whole
module. Its model repository is a copy of the session's demo repository with one broken
version added, ``titanic`` version 7 (a pipeline whose ONNX file is missing: it fails to
load and the runtime answers 503 for it). Each test breaks something and checks what a
client of the gateway sees:

- a replica killed with ``kill -9`` under steady load fails no request; the gateway marks it
  down, the supervisor restarts it and it rejoins;
- a primary that cannot answer is answered by its fallback, and the circuit breaker opens;
- shadows that fail change neither the client's status nor its latency;
- an invalid route policy is refused while traffic flows, and the old policy keeps serving;
- forged, expired, misdirected or under-scoped tokens get 401/403 with a challenge;
- an A/B split is sticky per subject and follows a weight change made without a restart.

Every route change a test makes is undone (or made on a route of its own).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import AuthConfig, mint_token
from tests.e2e.gateway_system import LocalSystem, is_runtime, local_system, wait_for

pytestmark = pytest.mark.e2e

PASSENGER = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}
EVAL = "/v1/models/{route}/eval"


@pytest.fixture(scope="module")
def system(
    demo_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalSystem]:
    workdir = tmp_path_factory.mktemp("up-faults")
    home = workdir / "home"
    shutil.copytree(demo_repository, home / "models")
    broken = home / "models" / "titanic" / "7"
    broken.mkdir()
    shutil.copy(demo_repository / "titanic" / "1" / "pipeline.yaml", broken)  # no .onnx
    with local_system(home, workdir / "up.log") as running:
        yield running


@pytest.fixture()
def admin(system: LocalSystem) -> Iterator[httpx.Client]:
    with system.client("ops", "admin") as client:
        yield client


@pytest.fixture()
def caller(system: LocalSystem) -> Iterator[httpx.Client]:
    with system.client("app1", "predict") as client:
        yield client


# -- helpers ----------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int | str  # the HTTP status, or the exception's name
    arm: str | None = None


@contextmanager
def steady_load(
    system: LocalSystem, rate_per_s: float, duration_s: float
) -> Iterator[list[Outcome]]:
    """``rate_per_s`` titanic predictions from a background thread for ``duration_s``.

    The body runs while the load does; on exit the load is waited for (bounded) and the
    list yielded holds one outcome per request.
    """
    outcomes: list[Outcome] = []

    def send() -> None:
        with system.client("load", "predict") as client:
            started = time.monotonic()
            for index in range(int(rate_per_s * duration_s)):
                time.sleep(max(0.0, started + index / rate_per_s - time.monotonic()))
                try:
                    response = client.post(EVAL.format(route="titanic"), json=PASSENGER)
                    outcomes.append(
                        Outcome(response.status_code, response.headers.get("x-driftgate-arm"))
                    )
                except httpx.HTTPError as exc:
                    outcomes.append(Outcome(type(exc).__name__))

    thread = threading.Thread(target=send, name="steady-load", daemon=True)
    thread.start()
    try:
        yield outcomes
    finally:
        thread.join(timeout=duration_s + 30)
    assert not thread.is_alive(), "the load thread did not finish"


def metric_total(base_url: str, sample: str, **labels: str) -> float:
    """The sum of the ``sample`` series at ``base_url/metrics`` whose labels include ``labels``."""
    text = httpx.get(base_url + "/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def put_route(admin: httpx.Client, name: str, policy: dict[str, Any]) -> None:
    response = admin.put(f"/admin/routes/{name}", json=policy)
    assert response.status_code == 200, response.text


# -- the primary cannot answer ----------------------------------------------------------


def test_a_failing_primary_is_answered_by_its_fallback_until_the_circuit_opens(
    system: LocalSystem, admin: httpx.Client, caller: httpx.Client
) -> None:
    readiness = caller.get("/v2/models/titanic/versions/7/ready")
    assert readiness.status_code == 503, readiness.text  # the broken version, as planted
    put_route(
        admin,
        "titanic_next",
        {
            "primary": {"model": "titanic", "version": "7"},
            "fallback": [{"model": "titanic", "version": "1"}],
            "circuit_breaker": {"failures": 3, "open_s": 60},
        },
    )
    direct = caller.post("/v1/models/titanic/versions/1/eval", json=PASSENGER).json()

    reasons = []
    for _ in range(5):
        response = caller.post(EVAL.format(route="titanic_next"), json=PASSENGER)
        assert response.status_code == 200, response.text
        assert response.headers["x-driftgate-role"] == "fallback"
        assert response.headers["x-driftgate-model"] == "titanic"
        assert response.headers["x-driftgate-version"] == "1"
        assert response.json()["outputs"] == direct["outputs"]
        reasons.append(response.headers["x-driftgate-fallback-reason"])

    # Three 503s (each retried on the other replica) open the breaker: then the broken
    # version is skipped without being called.
    assert reasons == ["status_5xx"] * 3 + ["circuit_open"] * 2
    circuit = {"route": "titanic_next", "model": "titanic", "version": "7", "state": "open"}
    assert circuit in admin.get("/admin/replicas").json()["circuits"]
    skipped = metric_total(
        system.url, "driftgate_fallbacks_total", route="titanic_next", reason="circuit_open"
    )
    assert skipped == 2
    retried = metric_total(system.url, "driftgate_upstream_retries_total", route="titanic_next")
    assert retried == 3


# -- shadows fail -----------------------------------------------------------------------


def test_failing_shadows_change_neither_status_nor_latency(
    system: LocalSystem, admin: httpx.Client, caller: httpx.Client
) -> None:
    """Shadows answering 404 (no such model) and 503 (the broken version) stay invisible;
    the failing version's shadows stop once their circuit breaker opens.

    A shadow that is slow rather than failing (2 s) is covered in-process, with a fake
    runtime that sleeps: tests/gateway/test_shadow.py,
    ``test_the_client_has_its_answer_before_a_slow_shadow_finishes``. No demo model is slow
    enough to show it here.
    """
    primary = {"model": "titanic", "version": "1"}
    put_route(admin, "titanic_plain", {"primary": primary})
    shadows = [{"model": "no_such_model"}, {"model": "titanic", "version": "7"}]
    put_route(
        admin,
        "titanic_shadowed",
        {"primary": primary, "shadow": [{"target": t, "percent": 100} for t in shadows]},
    )

    def shadows_of(target: dict[str, str], outcome: str) -> float:
        return metric_total(
            system.url,
            "driftgate_shadow_requests_total",
            route="titanic_shadowed",
            model=target["model"],
            version=target.get("version", ""),
            outcome=outcome,
        )

    def errors(target: dict[str, str]) -> float:
        """Failed, or not sent because they kept failing: after 5 failures in a row (the
        route's circuit_breaker.failures) version 7's shadows open their breaker."""
        return shadows_of(target, "error") + shadows_of(target, "circuit_open")

    def timed(route: str) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = caller.post(EVAL.format(route=route), json=PASSENGER)
        return time.perf_counter() - started, response

    for _ in range(3):  # warm both routes' connections and caches
        timed("titanic_plain")
        timed("titanic_shadowed")
    errors_before = [errors(t) for t in shadows]
    plain, shadowed = [], []
    for _ in range(20):  # interleaved, so both see the same background noise
        plain.append(timed("titanic_plain")[0])
        elapsed, response = timed("titanic_shadowed")
        shadowed.append(elapsed)
        assert response.status_code == 200, response.text
        assert response.headers["x-driftgate-role"] == "primary"
        assert response.headers["x-driftgate-version"] == "1"
        assert "error" not in response.json()

    assert statistics.median(shadowed) <= statistics.median(plain) + 0.050, (plain, shadowed)

    def counted() -> bool:  # shadows finish after their requests were answered
        return all(errors(t) >= b + 20 for t, b in zip(shadows, errors_before, strict=True))

    wait_for(counted, 5, "20 more shadow errors counted per failing shadow")
    assert shadows_of(shadows[1], "circuit_open") > 0  # 503: the target's fault
    assert shadows_of(shadows[0], "circuit_open") == 0  # 404: the request's


# -- an invalid policy ------------------------------------------------------------------


def test_an_invalid_policy_is_refused_while_traffic_flows_and_the_old_one_serves(
    system: LocalSystem, admin: httpx.Client
) -> None:
    before = admin.get("/admin/routes/titanic").json()
    arms = copy.deepcopy(before["policy"]["split"]["arms"])
    arms[1]["weight"] = -3
    invalid: list[tuple[bytes, str]] = [
        (json.dumps({"split": {"arms": arms}}).encode(), "split.arms[1].weight: must be >= 0"),
        (json.dumps({"split": {"weights": [50, 50]}}).encode(), "unknown key 'weights'"),
        (json.dumps({"retries": "two"}).encode(), "retries: expected an integer"),
        (b"{not json", "not valid JSON"),
    ]
    rejected = metric_total(
        system.url, "driftgate_route_updates_total", route="titanic", outcome="rejected"
    )

    with steady_load(system, rate_per_s=20, duration_s=3) as outcomes:
        for body, problem in invalid:
            response = admin.put("/admin/routes/titanic", content=body)
            assert response.status_code == 400, response.text
            assert problem in response.json()["error"]

    assert [o for o in outcomes if o.status != 200] == []
    assert admin.get("/admin/routes/titanic").json() == before
    assert metric_total(
        system.url, "driftgate_route_updates_total", route="titanic", outcome="rejected"
    ) == rejected + len(invalid)


# -- forged and misdirected tokens ------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(auth: AuthConfig, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "mallory", "scope": "predict admin", "iat": now, "exp": now + 600}
    claims |= {"iss": auth.issuer, "aud": auth.audience}
    return claims | overrides


def _unsigned(auth: AuthConfig) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"Bearer {header}.{_b64(json.dumps(_claims(auth)).encode())}."


def _signed_with_public_key(auth: AuthConfig) -> str:
    """The HS/RS confusion: an HMAC whose secret is an RSA public key's PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = ".".join(
        [
            _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
            _b64(json.dumps(_claims(auth)).encode()),
        ]
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"Bearer {signing_input}.{_b64(signature)}"


def _rs256(auth: AuthConfig) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return "Bearer " + jwt.encode(_claims(auth), key, algorithm="RS256")


def _other_secret(auth: AuthConfig) -> str:
    other = AuthConfig.from_dict(
        {"secret": "x" * 64, "issuer": auth.issuer, "audience": auth.audience}
    )
    return "Bearer " + mint_token(other, "mallory", ["predict"], 600)


def _real_key(auth: AuthConfig, **overrides: Any) -> str:
    """A token signed with the gateway's own secret, with claims that must be refused."""
    assert auth.secret is not None
    return "Bearer " + jwt.encode(_claims(auth, **overrides), auth.secret, algorithm="HS256")


def _tampered(auth: AuthConfig) -> str:
    header, _, signature = mint_token(auth, "app1", ["predict:iris"], 600).split(".")
    payload = _b64(json.dumps(_claims(auth, sub="app1")).encode())
    return f"Bearer {header}.{payload}.{signature}"


ATTACKS: dict[str, tuple[Callable[[AuthConfig], str | None], int, str | None]] = {
    # name: (Authorization header, expected status, expected `error` in the challenge)
    "no header": (lambda auth: None, 401, None),
    "basic scheme": (lambda auth: "Basic YXBwMTpodW50ZXIy", 401, None),
    "bearer without token": (lambda auth: "Bearer", 401, "invalid_token"),
    "not a jwt": (lambda auth: "Bearer not-a-jwt", 401, "invalid_token"),
    "two tokens": (lambda auth: "Bearer a.b.c d.e.f", 401, "invalid_token"),
    "oversized": (lambda auth: "Bearer " + "a" * 9000, 401, "invalid_token"),
    "alg none": (_unsigned, 401, "invalid_token"),
    "wrong key": (_other_secret, 401, "invalid_token"),
    "hs256 signed with an rsa public key": (_signed_with_public_key, 401, "invalid_token"),
    "rs256 instead of hs256": (_rs256, 401, "invalid_token"),
    "tampered payload": (_tampered, 401, "invalid_token"),
    "expired": (lambda auth: _real_key(auth, exp=int(time.time()) - 3600), 401, "invalid_token"),
    "not yet valid": (
        lambda auth: _real_key(auth, nbf=int(time.time()) + 3600),
        401,
        "invalid_token",
    ),
    "wrong audience": (lambda auth: _real_key(auth, aud="another-service"), 401, "invalid_token"),
    "wrong issuer": (lambda auth: _real_key(auth, iss="evil"), 401, "invalid_token"),
    "no subject": (lambda auth: _real_key(auth, sub=""), 401, "invalid_token"),
    "missing scope": (
        lambda auth: "Bearer " + mint_token(auth, "app1", ["predict:iris"], 600),
        403,
        "insufficient_scope",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_bad_tokens_are_refused_with_a_challenge(system: LocalSystem, attack: str) -> None:
    build, status, error = ATTACKS[attack]
    authorization = build(system.auth)
    headers = {} if authorization is None else {"authorization": authorization}
    response = httpx.post(
        system.url + EVAL.format(route="titanic"), json=PASSENGER, headers=headers, timeout=10
    )
    assert response.status_code == status, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="driftgate"')
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge
    assert response.json()["error"]
    assert "x-driftgate-model" not in response.headers


def test_the_admin_api_needs_the_admin_scope(system: LocalSystem, caller: httpx.Client) -> None:
    for request in (caller.get("/admin/routes"), caller.put("/admin/routes/titanic", json={})):
        assert request.status_code == 403, request.text
        assert 'error="insufficient_scope"' in request.headers["www-authenticate"]
    anonymous = httpx.get(system.url + "/admin/replicas", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="driftgate"'


# -- A/B --------------------------------------------------------------------------------


def test_ab_split_is_sticky_per_subject_and_follows_a_weight_change(
    system: LocalSystem, admin: httpx.Client
) -> None:
    subjects = [f"user-{i}" for i in range(200)]
    tokens = {subject: system.token(subject, "predict") for subject in subjects}
    versions = {"stable": "1", "canary": "2"}

    def arms(client: httpx.Client) -> dict[str, str]:
        chosen = {}
        for subject in subjects:
            seen = set()
            for _ in range(2):
                response = client.post(
                    EVAL.format(route="titanic"),
                    json=PASSENGER,
                    headers={"authorization": f"Bearer {tokens[subject]}"},
                )
                assert response.status_code == 200, response.text
                arm = response.headers["x-driftgate-arm"]
                assert response.headers["x-driftgate-version"] == versions[arm]
                seen.add(arm)
            assert len(seen) == 1, f"{subject} changed arm between calls: {seen}"
            chosen[subject] = seen.pop()
        return chosen

    def canary_share(chosen: dict[str, str]) -> float:
        return sum(arm == "canary" for arm in chosen.values()) / len(chosen)

    original = admin.get("/admin/routes/titanic").json()["policy"]
    assert [a["weight"] for a in original["split"]["arms"]] == [90, 10]
    with httpx.Client(base_url=system.url, timeout=15) as client:
        before = arms(client)
        assert 0.04 <= canary_share(before) <= 0.18, canary_share(before)

        halved = copy.deepcopy(original)
        for arm in halved["split"]["arms"]:
            arm["weight"] = 50
        try:
            put_route(admin, "titanic", halved)
            after = arms(client)
        finally:
            put_route(admin, "titanic", original)

    assert 0.38 <= canary_share(after) <= 0.62, canary_share(after)
    # Arms are slices of one interval: growing the canary only moves users into it.
    assert [s for s in subjects if before[s] == "canary" and after[s] != "canary"] == []
    assert admin.get("/admin/routes/titanic").json()["policy"] == original
    assert system.process.process.poll() is None  # no restart was involved


# -- a replica dies ---------------------------------------------------------------------


def out_of_rotation(replica: dict[str, Any]) -> dict[str, Any] | None:
    """The replica's status when the gateway sends it nothing (unhealthy or ejected)."""
    return replica if not replica["healthy"] or replica["ejected"] else None


def test_a_replica_killed_under_load_fails_no_request_and_rejoins(
    system: LocalSystem, admin: httpx.Client, caller: httpx.Client
) -> None:
    port = system.runtime_ports[0]
    victim = system.replica_pids()[port]
    assert is_runtime(victim, port)

    with steady_load(system, rate_per_s=20, duration_s=8) as outcomes:
        time.sleep(2)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: out_of_rotation(system.replicas(admin)[port]),
            5,
            f"the gateway to take replica {port} out of rotation",
        )

    assert len(outcomes) == 160
    assert [o for o in outcomes if o.status != 200] == []
    assert {o.arm for o in outcomes} <= {"stable", "canary"}

    def restarted_pid() -> int | None:
        pid = system.replica_pids()[port]
        return pid if pid != victim else None

    restarted = wait_for(restarted_pid, 15, f"the supervisor to restart replica {port}")
    assert is_runtime(restarted, port)
    assert f"runtime replica on port {port} exited with -9" in system.process.log()
    wait_for(
        lambda: out_of_rotation(system.replicas(admin)[port]) is None,
        90,
        f"replica {port} healthy again",
    )

    # Rejoined: the gateway's traffic reaches the new process again.
    for _ in range(10):
        assert caller.post(EVAL.format(route="titanic"), json=PASSENGER).status_code == 200
    served = metric_total(
        f"http://127.0.0.1:{port}", "driftgate_runtime_requests_total", model="titanic"
    )
    assert served > 0


# -- last in this module: it ends the shared system -----------------------------------------


def test_killing_up_itself_leaves_no_replica_or_jobs_process_behind(system: LocalSystem) -> None:
    """``kill -9`` of ``driftgate up`` gives it no chance to stop its children: the kernel
    sends them SIGTERM (PR_SET_PDEATHSIG), and they exit rather than live on as orphans.
    (The fixture's teardown also checks that no replica is left.)"""
    children = [pid for pid in system.replica_pids().values() if _alive(pid)]
    jobs = [int(pid) for pid in re.findall(r"jobs started \(pid (\d+)\)", system.process.log())]
    children += [pid for pid in jobs[-1:] if _alive(pid)]
    assert len(children) >= 3, system.process.log()  # two replicas and the jobs process
    os.kill(system.process.process.pid, signal.SIGKILL)
    system.process.process.wait(timeout=10)
    wait_for(
        lambda: not [pid for pid in children if _alive(pid)],
        20,
        f"the children {children} of the killed `up` to exit",
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
