"""A programmable fake of runtime replicas, and a gateway running in-process in front of it.

The gateway reaches its replicas only through ``httpx``; ``create_app(..., transport=...)``
takes an ``httpx.MockTransport``, so these tests need no sockets. :class:`FakeRuntime` plays
every replica at once: requests are told apart by the replica's ``host:port``, and every
request is recorded (:attr:`FakeRuntime.calls`) so a test can say which replica got what.

What a replica does is programmed per replica, model and version, with behaviours that
mimic what the real runtime and the network do:

- :class:`Answer`: 200 with the runtime's eval-style body ``{"model", "version", "outputs"}``
  and the ``X-Model-Name`` / ``X-Model-Version`` headers the gateway reads;
- :class:`Fail`: an error status with a JSON ``{"error": ...}`` body, naming the model and
  version that refused it as the runtime does;
- :class:`Refuse`: the connection is refused (``httpx.ConnectError``);
- :class:`Slow`: answer late. ``MockTransport`` applies no timeouts, so :class:`Slow` honours
  the read timeout of the gateway's request itself and raises ``httpx.ReadTimeout`` at
  that point, as a real transport would.

Readiness (``/v2/health/ready``) is programmed apart from inference: a replica can pass its
health check and still fail requests, which is what passive ejection is for.

``run_gateway`` starts ``create_app`` under Litestar's ``TestClient`` (the lifespan runs, so
health checks poll the fake) with an ``InMemorySpanExporter``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import GatewayApp, create_app
from gateway.settings import GatewaySettings
from gateway.state import GatewayState

#: Two replicas, addressed as the fake sees them (``host:port``).
REPLICAS = ("r1:9001", "r2:9002")

#: 32 bytes: the shortest secret HS256 accepts.
SECRET = "driftgate-test-secret-0123456789"

_INFERENCE_PATHS = (
    re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$"),
    re.compile(
        r"^/v1/models/(?P<model>[^/:]+)(?:/(?:versions|labels)/(?P<version>[^/:]+))?:predict$"
    ),
    re.compile(r"^/v1/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/eval$"),
)
_METADATA_PATH = re.compile(r"^/v2/models/(?P<model>[^/]+)$")


# --- behaviours -----------------------------------------------------------------------------


class Behaviour(Protocol):
    async def __call__(
        self, request: httpx.Request, model: str, version: str
    ) -> httpx.Response: ...


@dataclass(frozen=True)
class Answer:
    """200 with the runtime's eval answer for the resolved model and version."""

    outputs: Mapping[str, Any] = field(default_factory=lambda: {"class": ["setosa"]})

    async def __call__(self, request: httpx.Request, model: str, version: str) -> httpx.Response:
        body = {"model": model, "version": version, "outputs": dict(self.outputs)}
        headers = {"X-Model-Name": model, "X-Model-Version": version}
        if request_id := request.headers.get("x-request-id"):
            headers["X-Request-ID"] = request_id
        return httpx.Response(200, json=body, headers=headers)


@dataclass(frozen=True)
class Fail:
    """An error status with ``{"error": message}``, as the runtime writes its errors."""

    status: int
    message: str = "the model failed"

    @property
    def body(self) -> bytes:
        return json.dumps({"error": self.message}).encode()

    async def __call__(self, request: httpx.Request, model: str, version: str) -> httpx.Response:
        # The runtime names the version that refused, as it does for every model it knows.
        headers = {"Content-Type": "application/json", "X-Model-Name": model}
        headers["X-Model-Version"] = version
        return httpx.Response(self.status, content=self.body, headers=headers)


@dataclass(frozen=True)
class Refuse:
    """The connection is refused: the gateway sees ``httpx.ConnectError``."""

    async def __call__(self, request: httpx.Request, model: str, version: str) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


@dataclass(frozen=True)
class Slow:
    """Take ``seconds`` before behaving like ``then``, or time out first like a real transport."""

    seconds: float
    then: Behaviour = field(default_factory=Answer)

    async def __call__(self, request: httpx.Request, model: str, version: str) -> httpx.Response:
        read_timeout = request.extensions.get("timeout", {}).get("read")
        if read_timeout is not None and read_timeout < self.seconds:
            await asyncio.sleep(read_timeout)
            raise httpx.ReadTimeout("timed out", request=request)
        await asyncio.sleep(self.seconds)
        return await self.then(request, model, version)


# --- the fake runtime -----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request a replica received."""

    replica: str  # host:port
    method: str
    path: str
    headers: httpx.Headers
    body: bytes

    @property
    def request_id(self) -> str | None:
        value: str | None = self.headers.get("x-request-id")
        return value

    @property
    def traceparent(self) -> str | None:
        value: str | None = self.headers.get("traceparent")
        return value


@dataclass(frozen=True)
class _Rule:
    behaviour: Behaviour
    model: str | None
    version: str | None
    replica: str | None

    def matches(self, replica: str, model: str, version: str) -> bool:
        return all(
            wanted is None or wanted == actual
            for wanted, actual in (
                (self.replica, replica),
                (self.model, model),
                (self.version, version),
            )
        )


class FakeRuntime:
    """Runtime replicas serving ``models`` (name -> versions, the last one the default).

    Every model version answers (:class:`Answer`) until told otherwise with :meth:`behave`;
    the most recent matching rule wins. Versions may also be addressed by ``labels``.
    """

    def __init__(
        self,
        replicas: Sequence[str] = REPLICAS,
        models: Mapping[str, Sequence[str]] | None = None,
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.replicas = tuple(replicas)
        self.models = {name: tuple(v) for name, v in (models or {"iris": ("1", "2", "3")}).items()}
        self.labels = {name: dict(names) for name, names in (labels or {}).items()}
        self.calls: list[Call] = []
        self._ready = dict.fromkeys(self.replicas, True)
        self._rules: list[_Rule] = []

    @property
    def urls(self) -> list[str]:
        return [f"http://{replica}" for replica in self.replicas]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def behave(
        self,
        behaviour: Behaviour,
        *,
        model: str | None = None,
        version: str | None = None,
        replica: str | None = None,
    ) -> None:
        """From now on, inference on matching replica/model/version (None: any) does this."""
        self._rules.append(_Rule(behaviour, model, version, replica))

    def set_ready(self, replica: str, ready: bool) -> None:
        """What ``/v2/health/ready`` answers on ``replica`` from now on."""
        self._ready[replica] = ready

    def inference_calls(self) -> list[Call]:
        """The calls other than health checks, in the order they arrived."""
        return [call for call in self.calls if call.path != "/v2/health/ready"]

    def reset_calls(self) -> None:
        self.calls.clear()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        replica = request.url.netloc.decode()
        path = request.url.path
        self.calls.append(Call(replica, request.method, path, request.headers, request.content))
        if path == "/v2/health/ready":
            ready = self._ready[replica]
            return httpx.Response(200 if ready else 503, json={"ready": ready})
        if request.method == "GET" and (match := _METADATA_PATH.match(path)):
            return self._metadata(match["model"])
        match = next((m for p in _INFERENCE_PATHS if (m := p.match(path))), None)
        if match is None or request.method != "POST":
            return _not_found(f"no such endpoint: {request.method} {path}")
        model = match["model"]
        if model not in self.models:
            return _not_found(f"model '{model}' is not in the repository")
        version = self._resolve(model, match["version"])
        if version is None:
            return _not_found(f"model '{model}' has no version or label '{match['version']}'")
        return await self._behaviour(replica, model, version)(request, model, version)

    def _resolve(self, model: str, asked: str | None) -> str | None:
        versions = self.models[model]
        if asked is None:
            return versions[-1]
        if asked in versions:
            return asked
        return self.labels.get(model, {}).get(asked)

    def _behaviour(self, replica: str, model: str, version: str) -> Behaviour:
        for rule in reversed(self._rules):
            if rule.matches(replica, model, version):
                return rule.behaviour
        return Answer()

    def _metadata(self, model: str) -> httpx.Response:
        if model not in self.models:
            return _not_found(f"model '{model}' is not in the repository")
        return httpx.Response(200, json={"name": model, "versions": list(self.models[model])})


def _not_found(message: str) -> httpx.Response:
    return httpx.Response(404, json={"error": message})


# --- the gateway in front of it ---------------------------------------------------------------


def gateway_settings(
    routes: Mapping[str, Any] | None = None,
    *,
    replicas: Sequence[str] = REPLICAS,
    auth: Mapping[str, Any] | None = None,
    ejection: Mapping[str, Any] | None = None,
    routes_dir: Path | None = None,
) -> GatewaySettings:
    """Settings as ``gateway.yaml`` would give them: auth off unless given, fast health checks.

    Passive ejection is off in effect (a thousand failures in a row) unless ``ejection``
    says otherwise, so that tests of retries and fallbacks are not also tests of ejection.
    """
    raw: dict[str, Any] = {
        "replicas": [f"http://{replica}" for replica in replicas],
        "auth": dict(auth) if auth is not None else {"enabled": False},
        "routes": dict(routes or {}),
        "health_check": {"interval_s": 0.05, "timeout_s": 0.5},
        "ejection": dict(ejection or {"consecutive_failures": 1000}),
    }
    if routes_dir is not None:
        raw["routes_dir"] = str(routes_dir)
    return GatewaySettings.from_dict(raw)


@dataclass
class Gateway:
    """A running gateway app, its fake replicas and the spans it exported."""

    client: TestClient[GatewayApp]
    runtime: FakeRuntime
    spans: InMemorySpanExporter
    state: GatewayState

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples ``name`` on ``/metrics`` whose labels include ``labels``."""
        return float(
            sum(
                value
                for sample_labels, value in self.samples(name)
                if labels.items() <= sample_labels.items()
            )
        )

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every sample ``name`` on ``/metrics``: its labels and value."""
        scraped = self.client.get("/metrics")
        assert scraped.status_code == 200, scraped.text
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(scraped.text)
            for sample in family.samples
            if sample.name == name
        ]


@contextmanager
def run_gateway(settings: GatewaySettings, runtime: FakeRuntime) -> Iterator[Gateway]:
    """``create_app(settings)`` with its lifespan running, talking to ``runtime``."""
    spans = InMemorySpanExporter()
    app = create_app(settings, span_exporter=spans, transport=runtime.transport())
    with TestClient(app) as client:
        yield Gateway(client, runtime, spans, app.state)


class GatewayFactory:
    """Starts gateways for one test and stops them all when it ends."""

    def __init__(self, runtime: FakeRuntime, stack: ExitStack) -> None:
        self.runtime = runtime
        self._stack = stack

    def __call__(self, settings: GatewaySettings | None = None, **options: Any) -> Gateway:
        """A gateway with ``settings``, or with ``gateway_settings(**options)``."""
        if settings is None:
            settings = gateway_settings(replicas=self.runtime.replicas, **options)
        return self._stack.enter_context(run_gateway(settings, self.runtime))


@contextmanager
def gateway_factory(runtime: FakeRuntime) -> Iterator[GatewayFactory]:
    with ExitStack() as stack:
        yield GatewayFactory(runtime, stack)


def eventually(condition: Callable[[], object], timeout_s: float = 3.0) -> None:
    """Wait until ``condition()`` is true: for background work such as shadows."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"still false after {timeout_s}s"
        time.sleep(0.01)
