"""The runtime app in-process: tracing, metrics ownership and error rendering.

Uses the tiny ``scale`` backend (tests/runtime/fakes.py) so no ML framework is needed; the
dialects against real models are covered by tests/e2e.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from runtime.app import create_app
from runtime.routes.state import RuntimeState
from runtime.settings import RuntimeSettings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    (tmp_path / "double" / "1").mkdir(parents=True)
    (tmp_path / "double" / "config.yaml").write_text("format: scale\n")
    (tmp_path / "double" / "1" / "factor.txt").write_text("2")
    return tmp_path


@pytest.fixture
def client(repository: Path, spans: InMemorySpanExporter) -> Iterator[TestClient]:  # type: ignore[type-arg]
    settings = RuntimeSettings(repository=repository, poll_interval_s=0, max_body_bytes=1024)
    with TestClient(create_app(settings, span_exporter=spans)) as test_client:
        test_client.get("/v2/health/ready")
        yield test_client


def wait_ready(client: TestClient) -> None:  # type: ignore[type-arg]
    import time

    deadline = time.monotonic() + 10
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "runtime never became ready"
        time.sleep(0.05)


def test_a_request_is_one_trace_continuing_the_callers_traceparent(
    client: TestClient,
    spans: InMemorySpanExporter,  # type: ignore[type-arg]
) -> None:
    wait_ready(client)
    spans.clear()
    answer = client.post(
        "/v1/models/double/eval", json={"x": 3}, headers={"traceparent": TRACEPARENT}
    )
    assert answer.json()["outputs"] == {"y": 6.0}
    finished = {span.name: span for span in spans.get_finished_spans()}
    server = finished["POST /v1/models/{model}/eval"]
    infer = finished["infer double"]
    assert server.kind is SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.attributes is not None and infer.attributes is not None
    assert server.attributes["http.route"] == "/v1/models/{model}/eval"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.request.method"] == "POST"
    assert infer.parent is not None and infer.parent.span_id == server.context.span_id
    assert infer.attributes["driftgate.model.version"] == "1"
    assert infer.attributes["driftgate.batch_size"] == 1


def test_health_and_metrics_are_not_traced(
    client: TestClient,
    spans: InMemorySpanExporter,  # type: ignore[type-arg]
) -> None:
    wait_ready(client)
    spans.clear()
    client.get("/metrics")
    client.get("/v2/health/live")
    assert spans.get_finished_spans() == ()


def test_server_metadata_answers_head_as_health_does(client: TestClient) -> None:  # type: ignore[type-arg]
    assert client.get("/v2").json()["name"] == "driftgate"
    assert client.head("/v2").status_code == 200  # was 405


def test_two_apps_in_one_process_own_their_metrics(repository: Path) -> None:
    first = create_app(RuntimeSettings(repository=repository, poll_interval_s=0))
    second = create_app(RuntimeSettings(repository=repository, poll_interval_s=0))
    with TestClient(first) as one, TestClient(second) as two:
        wait_ready(one)
        wait_ready(two)
        one.post("/v1/models/double/eval", json={"x": 1})
        assert 'model="double",protocol="eval"' in one.get("/metrics").text
        assert (
            'protocol="eval"'
            not in two.get("/metrics").text.split("driftgate_runtime_requests_total")[-1]
        )


def test_errors_render_as_json_never_as_a_stack_trace(client: TestClient) -> None:  # type: ignore[type-arg]
    wait_ready(client)
    assert client.get("/no/such/path").json() == {"error": "Not Found"}
    assert client.put("/v1/models/double/eval").status_code == 405
    wrong_method = client.get("/v1/models/double:predict")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {
        "error": "method GET is not allowed on /v1/models/double:predict; use POST"
    }
    assert wrong_method.headers["allow"] == "OPTIONS, POST"
    # Litestar's own 405s said only "Method Not Allowed", and PUT on :predict offered GET.
    put_eval = client.put("/v1/models/double/eval")
    assert put_eval.json() == {
        "error": "method PUT is not allowed on /v1/models/double/eval; use POST"
    }
    put_predict = client.put("/v1/models/double/versions/1:predict")
    assert put_predict.status_code == 405
    assert put_predict.json() == {
        "error": "method PUT is not allowed on /v1/models/double/versions/1:predict; use POST"
    }
    assert put_predict.headers["allow"] == "OPTIONS, POST"
    # A TF-Serving verb on an Open Inference Protocol path names no model: POST is no cure.
    mixed = client.post("/v2/models/double:predict", json={"inputs": {}})
    assert mixed.status_code == 405
    assert "POST" not in mixed.headers["allow"]
    assert mixed.json()["error"].endswith(
        "(`:predict` is TF-Serving's, under /v1/models/; the Open Inference Protocol "
        "predicts with POST /v2/models/{model}/infer)"
    )
    too_big = client.post(
        "/v1/models/double/eval", content=b"{" * 2048, headers={"content-type": "application/json"}
    )
    assert too_big.status_code == 413
    assert "exceeds the limit of 1024 bytes" in too_big.json()["error"]


def test_a_refusal_says_which_model_version_refused_it(client: TestClient) -> None:  # type: ignore[type-arg]
    """The gateway labels its metrics and log partitions with what the runtime confirms."""
    wait_ready(client)
    refused = client.post("/v1/models/double/eval", json={"x": "seven"})
    assert refused.status_code == 400
    assert refused.headers["x-model-name"] == "double"
    assert refused.headers["x-model-version"] == "1"
    unknown = client.post("/v1/models/nope/eval", json={"x": 1})
    assert unknown.status_code == 404
    assert "x-model-name" not in unknown.headers


def test_unknown_models_share_one_metrics_label(client: TestClient) -> None:  # type: ignore[type-arg]
    wait_ready(client)
    for name in ("a", "b", "c"):
        assert client.post(f"/v1/models/{name}/eval", json={}).status_code == 404
    text = client.get("/metrics").text
    assert 'model="_unknown"' in text and 'model="a"' not in text


def test_requests_in_flight_count_while_a_request_is_served_whatever_its_outcome(
    repository: Path,
) -> None:
    app = create_app(RuntimeSettings(repository=repository, poll_interval_s=0))
    state: RuntimeState = app.state.runtime

    def in_flight() -> float | None:
        return state.registry.get_sample_value("driftgate_runtime_requests_in_flight")

    async def serve_two_one_failing() -> list[float | None]:
        seen = [in_flight()]
        async with state.measure("eval", "double"), state.measure("v2", "double"):
            seen.append(in_flight())
        with pytest.raises(RuntimeError):
            async with state.measure("eval", "double"):
                seen.append(in_flight())
                raise RuntimeError("the model failed")
        seen.append(in_flight())
        return seen

    assert asyncio.run(serve_two_one_failing()) == [0.0, 2.0, 1.0, 0.0]
    with TestClient(app) as client:
        wait_ready(client)
        assert client.post("/v1/models/double/eval", json={"x": 1}).status_code == 200
        assert "driftgate_runtime_requests_in_flight 0.0" in client.get("/metrics").text


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_big_bodies_are_decoded_and_validated_off_the_event_loop(
    repository: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 16 MB body took seconds to decode on the loop, and health checks waited for it."""
    import runtime.codecs.oip
    import runtime.codecs.simple
    import runtime.codecs.tfserving
    import runtime.predictor

    on_loop: list[tuple[str, bool]] = []

    def watched(name: str, work: Any) -> Any:
        def run(*args: Any) -> Any:
            on_loop.append((name, on_event_loop()))
            return work(*args)

        return run

    for module, name in [
        (runtime.codecs.simple, "decode_eval"),
        (runtime.codecs.tfserving, "decode_predict"),
        (runtime.codecs.oip, "decode_infer_request"),
        (runtime.predictor, "validate_inputs"),
    ]:
        monkeypatch.setattr(module, name, watched(name, getattr(module, name)))
    settings = RuntimeSettings(repository=repository, poll_interval_s=0)
    small, big = [[1.0]], [[1.0]] * 20_000  # 20,000 elements: past both limits
    with TestClient(create_app(settings, span_exporter=spans)) as client:
        wait_ready(client)
        for rows in (small, big):
            requests = [
                ("/v1/models/double/eval", {"x": rows}, "decode_eval"),
                ("/v1/models/double:predict", {"inputs": {"x": rows}}, "decode_predict"),
                (
                    "/v2/models/double/infer",
                    {"inputs": [{"name": "x", "shape": [len(rows), 1], "datatype": "FP32",
                                 "data": rows}]},
                    "decode_infer_request",
                ),
            ]  # fmt: skip
            for path, body, decoder in requests:
                on_loop.clear()
                answer = client.post(path, json=body)
                assert answer.status_code == 200, answer.text
                inline = rows is small
                assert on_loop == [(decoder, inline), ("validate_inputs", inline)], path


def test_a_model_with_a_broken_config_is_listed_with_its_error(
    repository: Path, spans: InMemorySpanExporter
) -> None:
    """It was missing from /v1/models, and its metadata said LOADING, forever."""
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "config.yaml").write_text("foo: 1\n")
    settings = RuntimeSettings(repository=repository, poll_interval_s=0)
    with TestClient(create_app(settings, span_exporter=spans)) as client:
        wait_ready(client)
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert "unknown key(s) ['foo']" in listed["broken"]["error"]
        assert listed["broken"]["versions"] == []
        assert "error" not in listed["double"]
        metadata = client.get("/v2/models/broken").json()
        assert metadata["state"] == "UNAVAILABLE"
        assert "unknown key(s) ['foo']" in metadata["error"]
        scraped = client.get("/metrics").text
        assert 'driftgate_model_ready{model="broken",version=""} 0.0' in scraped
        # Named in the refusal, so the gateway counts it under its route, not _unknown.
        refused = client.post("/v1/models/broken/eval", json={"x": 1})
        assert refused.status_code == 503
        assert refused.headers["x-model-name"] == "broken"
        assert "x-model-version" not in refused.headers


def test_health_probes_answer_head_too(client: TestClient) -> None:  # type: ignore[type-arg]
    """Load balancers probe with HEAD; it answered 405."""
    wait_ready(client)
    assert client.head("/v2/health/live").status_code == 200
    assert client.head("/v2/health/ready").status_code == 200


def png(image: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_declaring_many_pixels_are_decoded_off_the_event_loop(
    repository: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1.5 KB PNG can declare 9 megapixels: it held the event loop for 0.2-0.7 s."""
    from PIL import Image

    import runtime.codecs.simple

    (repository / "double" / "config.yaml").write_text(
        "format: scale\nimage: {width: 1, height: 1}\n"
    )
    on_loop: list[bool] = []
    decode = runtime.codecs.simple.decode_eval_image

    def watched(*args: Any) -> Any:
        on_loop.append(on_event_loop())
        return decode(*args)

    monkeypatch.setattr(runtime.codecs.simple, "decode_eval_image", watched)
    small, vast = png(Image.new("L", (16, 16), 255)), png(Image.new("1", (3000, 3000), 1))
    assert len(vast) < 16 * 1024  # under the body-size limit for decoding inline
    settings = RuntimeSettings(repository=repository, poll_interval_s=0)
    with TestClient(create_app(settings, span_exporter=spans)) as client:
        wait_ready(client)
        for body in (small, vast):
            answer = client.post(
                "/v1/models/double/eval", content=body, headers={"content-type": "image/png"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"]["y"] == 510.0
    assert on_loop == [True, False]


def test_an_image_section_changed_to_one_the_model_cannot_take_is_refused_at_the_scan(
    repository: Path, spans: InMemorySpanExporter
) -> None:
    """Only new versions were checked against it: loaded ones answered every image with 500."""
    from PIL import Image

    config = repository / "double" / "config.yaml"
    config.write_text("format: scale\nimage: {width: 1, height: 1}\n")
    settings = RuntimeSettings(repository=repository, poll_interval_s=0)
    body, headers = png(Image.new("L", (4, 4), 255)), {"content-type": "image/png"}
    with TestClient(create_app(settings, span_exporter=spans)) as client:
        wait_ready(client)
        assert client.post("/v1/models/double/eval", content=body, headers=headers).json()[
            "outputs"
        ] == {"y": 510.0}
        config.write_text("format: scale\nimage: {width: 2, height: 2}\n")  # 4 values, x takes 1
        client.app.state.runtime.repository.scan()
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert "a 2x2 grayscale image cannot feed input 'x'" in listed["double"]["error"]
        assert "version 1" in listed["double"]["error"]
        # What already served keeps serving, with the section it was loaded with.
        answer = client.post("/v1/models/double/eval", content=body, headers=headers)
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin/routes"), ("PUT", "/admin/routes/iris"), ("POST", "/v1/feedback")],
)
def test_the_gateways_paths_on_a_replica_say_where_to_go(
    client: TestClient,  # type: ignore[type-arg]
    method: str,
    path: str,
) -> None:
    """A user who sent the admin API or feedback to a replica got a bare "Not Found"."""
    answer = client.request(method, path, json={})
    assert answer.status_code == 404
    assert answer.json() == {
        "error": f"{path} is the gateway's, and this is a runtime replica: send it to the "
        "gateway (port 8000 under `driftgate up`)"
    }


def test_other_unknown_paths_stay_a_plain_not_found(client: TestClient) -> None:  # type: ignore[type-arg]
    answer = client.get("/v1/modelz")
    assert answer.status_code == 404
    assert "gateway" not in answer.json()["error"]
