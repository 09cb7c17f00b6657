"""What a client library reads when it connects, through the gateway.

``GET /v2`` (Open Inference Protocol server metadata) was a bare 404 through the gateway,
so tritonclient's ``get_server_metadata()`` and KServe clients' server checks failed,
though they worked on a replica. The gateway now answers it itself, naming itself and the
extensions that work through it. The other reads a client makes on connect (health, model
metadata and readiness, TF-Serving's version status) keep being answered: health by the
gateway, the model's by a replica.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterator

import httpx
import pytest

from gateway.auth import AuthConfig, mint_token
from tests.gateway.fakes import FakeRuntime, GatewayFactory, eventually, gateway_factory

AUTH = {"algorithm": "HS256", "secret": "s" * 48, "issuer": "driftgate", "audience": "driftgate"}
#: The model reads a client makes on connect; the gateway forwards each to a replica.
MODEL_READS = [
    "/v2/models/iris",  # OIP model metadata (tritonclient get_model_metadata)
    "/v2/models/iris/versions/1",
    "/v2/models/iris/ready",  # OIP model readiness (is_model_ready)
    "/v2/models/iris/versions/1/ready",
    "/v1/models/iris",  # TF-Serving version status
    "/v1/models/iris/versions/1",
    "/v1/models/iris/metadata",  # TF-Serving signature
]
_MODEL_READ = re.compile(r"^/v[12]/models/iris(/versions/1)?(/ready|/metadata)?$")


class ModelReadingRuntime(FakeRuntime):
    """Fake replicas that also answer every model read, naming the path they were asked."""

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and _MODEL_READ.match(request.url.path):
            await super().handle(request)  # recorded in ``calls``
            return httpx.Response(200, json={"asked": request.url.path})
        return await super().handle(request)


@pytest.fixture
def runtime() -> FakeRuntime:
    return ModelReadingRuntime()


@pytest.fixture
def start(runtime: FakeRuntime) -> Iterator[GatewayFactory]:
    with gateway_factory(runtime) as factory:
        yield factory


def test_server_metadata_is_the_gateway_s_own(start, runtime: FakeRuntime) -> None:
    gateway = start()
    runtime.reset_calls()
    answer = gateway.client.get("/v2")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {
        "name": "driftgate-gateway",
        "version": importlib.metadata.version("driftgate"),
        # What works through it: tritonclient's binary tensors are forwarded both ways.
        "extensions": ["binary_tensor_data"],
    }
    assert runtime.inference_calls() == []  # no replica was asked
    assert gateway.client.head("/v2").status_code == 200  # as health: probes use HEAD


def test_server_metadata_needs_no_token_like_health_unlike_model_metadata(start) -> None:
    gateway = start(auth=AUTH)
    assert gateway.client.get("/v2").status_code == 200
    assert gateway.client.get("/v2/health/live").status_code == 200
    assert gateway.client.get("/v2/health/ready").status_code == 200
    refused = gateway.client.get("/v2/models/iris")
    assert refused.status_code == 401
    token = mint_token(AuthConfig.from_dict(AUTH), "app1", ["predict:iris"], 600)
    read = gateway.client.get("/v2/models/iris", headers={"Authorization": f"Bearer {token}"})
    assert read.status_code == 200


def test_server_metadata_is_traced_like_the_other_reads_and_not_counted_as_inference(
    start,
) -> None:
    gateway = start()
    assert gateway.client.get("/v2").status_code == 200
    (span,) = [s for s in gateway.spans.get_finished_spans() if s.name == "GET /v2"]
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/v2"
    assert span.attributes["http.response.status_code"] == 200
    assert gateway.samples("driftgate_requests_total") == []


@pytest.mark.parametrize("path", MODEL_READS)
def test_every_model_read_a_client_makes_on_connect_is_answered_by_a_replica(
    start, runtime: FakeRuntime, path: str
) -> None:
    gateway = start()
    runtime.reset_calls()
    answer = gateway.client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"asked": path}
    assert [(call.method, call.path) for call in runtime.inference_calls()] == [("GET", path)]


def test_health_is_answered_by_the_gateway_from_its_replicas_checks(
    start, runtime: FakeRuntime
) -> None:
    gateway = start()
    assert gateway.client.get("/v2/health/live").json() == {"live": True}
    assert gateway.client.get("/v2/health/ready").json() == {"ready": True}
    for replica in runtime.replicas:
        runtime.set_ready(replica, False)
    eventually(lambda: gateway.client.get("/v2/health/ready").status_code == 503)
