"""Explain through the gateway: authorised and routed like eval, but never logged or mirrored.

``POST /v1/models/{m}[/versions/{v}]/explain`` takes eval's body and answers attributions.
The gateway checks the ``predict`` scope, plans the route (A/B arm, fallback) and rewrites
the path exactly as for eval, forwarding the query string (``output``, ``samples``...) too.
An explanation is not a prediction: it is not offered to the prediction log and no shadow
gets a copy. Replicas are the fake runtime of tests/gateway/fakes.py, taught to explain.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth import AuthConfig, mint_token
from gateway.settings import GatewaySettings
from monitoring.prediction_log import run_sql
from tests.gateway.fakes import (
    REPLICAS,
    SECRET,
    Fail,
    FakeRuntime,
    GatewayFactory,
    eventually,
    gateway_factory,
)

BODY = {"fare": 7.25, "sex": "male"}
AUTH = {"algorithm": "HS256", "secret": SECRET}
_EXPLAIN_PATH = re.compile(r"^/v1/models/[^/]+(?:/versions/[^/]+)?/explain$")


class ExplainingRuntime(FakeRuntime):
    """The fake runtime, also answering ``/explain`` (as it answers eval: same models,
    versions and programmed behaviours), and remembering every path and query it got."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.received: list[tuple[str, str]] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path, query = request.url.path, request.url.query.decode()
        if path != "/v2/health/ready":
            self.received.append((path, query))
        if not _EXPLAIN_PATH.match(path):
            return await super().handle(request)
        as_eval = httpx.Request(
            request.method,
            request.url.copy_with(path=path.removesuffix("/explain") + "/eval", query=None),
            headers=request.headers,
            content=request.content,
        )
        answered = await super().handle(as_eval)
        if answered.status_code != 200:
            return answered
        version = answered.headers["X-Model-Version"]
        body = {
            "model": answered.headers["X-Model-Name"],
            "version": version,
            "method": "kernel_shap",
            "explanations": {"prediction": 0.1, "attributions": {"fare": -0.2, "sex": 0.3}},
        }
        return httpx.Response(200, json=body, headers=dict(answered.headers))

    def explain_paths(self) -> list[str]:
        return [path for path, _ in self.received if path.endswith("/explain")]


@pytest.fixture
def runtime() -> ExplainingRuntime:
    return ExplainingRuntime(models={"iris": ["1", "2"]})


@pytest.fixture
def start(runtime: ExplainingRuntime) -> Iterator[GatewayFactory]:
    with gateway_factory(runtime) as factory:
        yield factory


def bearer(*scopes: str) -> dict[str, str]:
    token = mint_token(AuthConfig.from_dict(AUTH), "app1", scopes, 300)
    return {"Authorization": f"Bearer {token}"}


def test_explain_is_readdressed_to_the_routes_version_with_its_query(start, runtime) -> None:
    gateway = start(routes={"iris": {"primary": {"model": "iris", "version": "2"}}})

    answer = gateway.client.post("/v1/models/iris/explain?output=probability&samples=64", json=BODY)

    assert answer.status_code == 200, answer.text
    assert runtime.received == [
        ("/v1/models/iris/versions/2/explain", "output=probability&samples=64")
    ]
    assert answer.json()["explanations"]["attributions"] == {"fare": -0.2, "sex": 0.3}
    assert answer.headers["X-Driftgate-Version"] == "2"
    assert answer.headers["X-Driftgate-Role"] == "primary"


def test_a_version_path_is_explained_by_that_version(start, runtime) -> None:
    gateway = start(routes={"iris": {"primary": {"model": "iris", "version": "2"}}})

    answer = gateway.client.post("/v1/models/iris/versions/1/explain", json=BODY)

    assert answer.status_code == 200
    assert runtime.received == [("/v1/models/iris/versions/1/explain", "")]
    assert answer.headers["X-Driftgate-Version"] == "1"


@pytest.mark.parametrize(
    ("scope", "status"),
    [
        (None, 401),
        ("admin", 403),
        ("predict:titanic", 403),
        ("predict:iris", 200),
        ("predict", 200),
    ],
    ids=["no-token", "admin", "another-model", "this-model", "every-model"],
)
def test_explain_needs_the_predict_scope(start, runtime, scope, status) -> None:
    gateway = start(auth=AUTH)
    headers = {} if scope is None else bearer(scope)  # minted now: tokens expire

    answer = gateway.client.post("/v1/models/iris/explain", json=BODY, headers=headers)

    assert answer.status_code == status
    assert len(runtime.explain_paths()) == (1 if status == 200 else 0)


def test_explain_lands_on_the_same_arm_as_eval_for_the_same_sticky_key(start, runtime) -> None:
    split = {
        "arms": [
            {"name": "control", "target": {"model": "iris", "version": "1"}, "weight": 1},
            {"name": "treatment", "target": {"model": "iris", "version": "2"}, "weight": 1},
        ],
        "sticky": {"by": "header", "name": "x-user"},
    }
    gateway = start(routes={"iris": {"split": split}})

    arms = set()
    for user in (f"user-{i}" for i in range(8)):
        headers = {"x-user": user}
        evaluated = gateway.client.post("/v1/models/iris/eval", json=BODY, headers=headers)
        explained = gateway.client.post("/v1/models/iris/explain", json=BODY, headers=headers)
        assert explained.status_code == 200
        arm = explained.headers["X-Driftgate-Arm"]
        assert arm == evaluated.headers["X-Driftgate-Arm"]
        assert explained.headers["X-Driftgate-Version"] == evaluated.headers["X-Driftgate-Version"]
        arms.add(arm)
    assert arms == {"control", "treatment"}  # the keys spread over both arms


def test_explain_falls_back_when_the_primary_fails(start, runtime) -> None:
    runtime.behave(Fail(500), model="iris", version="2")
    route = {
        "primary": {"model": "iris", "version": "2"},
        "fallback": [{"model": "iris", "version": "1"}],
    }
    gateway = start(routes={"iris": route})

    answer = gateway.client.post("/v1/models/iris/explain?samples=64", json=BODY)

    assert answer.status_code == 200
    assert answer.headers["X-Driftgate-Role"] == "fallback"
    assert runtime.explain_paths() == [
        "/v1/models/iris/versions/2/explain",
        "/v1/models/iris/versions/1/explain",
    ]
    assert {query for _, query in runtime.received} == {"samples=64"}  # every try has it


def logged_settings(tmp_path: Path) -> GatewaySettings:
    """Every answer logged, every request mirrored to version 1 and compared."""
    shadow = {
        "target": {"model": "iris", "version": "1"},
        "compare": {"kind": "class", "output": "class"},
    }
    return GatewaySettings.from_dict(
        {
            "replicas": [f"http://{replica}" for replica in REPLICAS],
            "auth": {"enabled": False},
            "health_check": {"interval_s": 0.05, "timeout_s": 0.5},
            "routes": {"iris": {"primary": {"model": "iris", "version": "2"}, "shadow": [shadow]}},
            "log": {
                "store": str(tmp_path / "store"),
                "flush_interval_s": 0.2,
                "sampling": {"default": 1.0},
            },
        }
    )


def test_explain_answers_are_neither_logged_nor_mirrored(start, runtime, tmp_path: Path) -> None:
    gateway = start(logged_settings(tmp_path))

    explained = gateway.client.post(
        "/v1/models/iris/explain", json=BODY, headers={"x-request-id": "why"}
    )
    evaluated = gateway.client.post(
        "/v1/models/iris/eval", json=BODY, headers={"x-request-id": "what"}
    )

    assert explained.status_code == evaluated.status_code == 200
    # The eval is mirrored and both its answers are logged; the explain is neither.
    eventually(lambda: gateway.metric("driftgate_shadow_requests_total") == 1)
    recorder = gateway.state.recorder
    assert recorder is not None
    eventually(lambda: gateway.metric("driftgate_log_exchanges_total", outcome="queued") == 2)
    recorder.flush()
    rows = run_sql(
        tmp_path / "store", "select request_id, role from predictions order by role"
    ).rows
    assert rows == [("what", "primary"), ("what", "shadow")]
    assert runtime.explain_paths() == ["/v1/models/iris/versions/2/explain"]  # no shadow copy
    assert gateway.metric("driftgate_log_exchanges_total", route="iris") == 2
