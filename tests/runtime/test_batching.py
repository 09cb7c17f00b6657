"""Dynamic batching (runtime/batching.py): the queue itself, then through the runtime app.

The queue's tests drive ``Batcher`` with a recording ``run`` on a real event loop; no test
depends on how long anything takes except through the queue delay, which is set far
longer than the tests need (a request waits for its company, never the other way round).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime.app import create_app
from runtime.batching import Batched, Batcher
from runtime.batching_config import BatchingConfig
from runtime.config import ConfigError, parse_model_config
from runtime.errors import ClientClosedRequest, ServiceOverloaded
from runtime.settings import RuntimeSettings

LONG_DELAY_S = 1.0  # the longest allowed; no test waits for it: its batches fill up first


class Recorder:
    """A ``run`` for the batcher: doubles ``x``, remembers each call's rows, can fail."""

    def __init__(self, fail_on_negative: bool = False, batched_outputs: bool = True) -> None:
        self.calls: list[int] = []
        self.fail_on_negative = fail_on_negative
        self.batched_outputs = batched_outputs

    async def __call__(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        self.calls.append(rows)
        await asyncio.sleep(0)  # a real call yields to the loop (thread pool)
        if self.fail_on_negative and (inputs["x"] < 0).any():
            raise ValueError("negative input")
        outputs = {"y": inputs["x"] * 2}
        if not self.batched_outputs:  # a summary of the whole call, not one row per row
            outputs["total"] = np.array([inputs["x"].sum()])
        return outputs


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[v] for v in values], dtype=np.float32)}


def serve(
    requests: list[dict[str, np.ndarray]], run: Recorder, max_batch_size: int
) -> tuple[list[Batched | BaseException], list[tuple[str, int]]]:
    """Every request submitted at once; their answers (or errors) and what was reported."""
    reported: list[tuple[str, int]] = []
    batcher = Batcher(
        BatchingConfig(max_batch_size, LONG_DELAY_S),
        run,
        on_depth=lambda depth: reported.append(("depth", depth)),
        on_split=lambda reason: reported.append((reason, 0)),
    )

    async def main() -> list[Batched | BaseException]:
        return await asyncio.gather(
            *(batcher.submit(r, len(r["x"])) for r in requests), return_exceptions=True
        )

    return asyncio.run(main()), reported


def test_concurrent_requests_run_as_one_call_and_each_gets_its_own_rows() -> None:
    run = Recorder()
    answers, reported = serve([rows(1), rows(2, 3), rows(4)], run, max_batch_size=4)

    assert run.calls == [4]
    assert [a.outputs["y"].ravel().tolist() for a in answers] == [[2], [4, 6], [8]]  # type: ignore[union-attr]
    assert {(a.requests, a.rows) for a in answers} == {(3, 4)}  # type: ignore[union-attr]
    assert all(a.started_ns >= a.joined_ns for a in answers)  # type: ignore[union-attr]
    assert ("depth", 3) in reported and reported[-1] == ("depth", 0)


def test_batches_never_pass_max_batch_size_and_keep_arrival_order() -> None:
    run = Recorder()
    answers, _ = serve([rows(v) for v in range(5)], run, max_batch_size=2)

    assert run.calls == [2, 2, 1]
    assert [a.outputs["y"].item() for a in answers] == [0, 2, 4, 6, 8]  # type: ignore[union-attr]


def test_a_request_larger_than_the_limit_runs_alone() -> None:
    run = Recorder()
    answers, _ = serve([rows(1, 2, 3), rows(4)], run, max_batch_size=2)

    assert run.calls == [3, 1]
    assert answers[0].outputs["y"].ravel().tolist() == [2, 4, 6]  # type: ignore[union-attr]


def test_inputs_that_do_not_stack_go_in_separate_calls() -> None:
    run = Recorder()
    wide = {"x": np.array([[1, 1]], dtype=np.float32)}  # shape (1, 2) against (1, 1)
    as_float64 = {"x": np.array([[5]], dtype=np.float64)}
    answers, _ = serve([rows(1), wide, rows(2), as_float64], run, max_batch_size=4)

    assert sorted(run.calls) == [1, 1, 2]
    assert answers[1].outputs["y"].tolist() == [[2, 2]]  # type: ignore[union-attr]
    assert answers[3].outputs["y"].dtype == np.float64  # type: ignore[union-attr]


def test_a_bad_request_fails_alone_and_its_neighbours_are_answered() -> None:
    run = Recorder(fail_on_negative=True)
    answers, reported = serve([rows(1), rows(-1), rows(3)], run, max_batch_size=3)

    assert run.calls == [3, 1, 1, 1]  # the merged call failed; then one by one
    assert answers[0].outputs["y"].item() == 2  # type: ignore[union-attr]
    assert isinstance(answers[1], ValueError)
    assert answers[2].outputs["y"].item() == 6  # type: ignore[union-attr]
    assert ("call_failed", 0) in reported


def test_outputs_without_one_row_per_row_are_not_split_but_recomputed_per_request() -> None:
    run = Recorder(batched_outputs=False)
    answers, reported = serve([rows(1), rows(2)], run, max_batch_size=2)

    assert run.calls == [2, 1, 1]
    assert [a.outputs["total"].item() for a in answers] == [1, 2]  # type: ignore[union-attr]
    assert ("outputs_not_batched", 0) in reported


def test_with_a_delay_a_lone_request_runs_when_it_expires() -> None:
    run = Recorder()
    batcher = Batcher(BatchingConfig(8, 0.01), run)

    answer = asyncio.run(batcher.submit(rows(7), 1))

    assert run.calls == [1] and answer.requests == 1 and answer.outputs["y"].item() == 14


def test_with_no_delay_an_idle_model_answers_at_once_and_arrivals_meanwhile_go_together() -> None:
    release = asyncio.Event()
    calls: list[int] = []

    async def slow_run(inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        calls.append(rows)
        if len(calls) == 1:
            await release.wait()  # the first call is still running when the others arrive
        return {"y": inputs["x"] * 2}

    batcher = Batcher(BatchingConfig(32, 0.0), slow_run)

    async def main() -> list[Batched]:
        first = asyncio.ensure_future(batcher.submit(rows(1), 1))
        await asyncio.sleep(0)
        assert calls == [1]  # no queue, no timer: it runs at once
        others = [asyncio.ensure_future(batcher.submit(rows(v), 1)) for v in (2, 3, 4)]
        await asyncio.sleep(0)
        assert calls == [1]  # they wait for the running call
        release.set()
        return list(await asyncio.gather(first, *others))

    answers = asyncio.run(main())

    assert calls == [1, 3]
    assert [(a.requests, a.outputs["y"].item()) for a in answers] == [
        (1, 2),
        (3, 4),
        (3, 6),
        (3, 8),
    ]


def test_a_request_cancelled_while_queued_is_not_run() -> None:
    run = Recorder()
    batcher = Batcher(BatchingConfig(3, LONG_DELAY_S), run)

    async def main() -> list[Batched]:
        kept = asyncio.ensure_future(batcher.submit(rows(1), 1))
        gone = asyncio.ensure_future(batcher.submit(rows(2), 1))
        await asyncio.sleep(0)  # both queued
        gone.cancel()  # the client hung up
        await asyncio.sleep(0)
        last = asyncio.ensure_future(batcher.submit(rows(3), 1))  # 3 rows queued: it starts
        return list(await asyncio.gather(kept, last))

    answers = asyncio.run(main())

    assert run.calls == [2]  # 1 and 3 together; 2 never ran
    assert [a.outputs["y"].item() for a in answers] == [2, 6]


class Gate:
    """A ``run`` whose first call waits for ``open()``: the model is busy while others queue."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.released = asyncio.Event()

    async def __call__(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        self.calls.append(inputs["x"].ravel().tolist())
        if len(self.calls) == 1:
            await self.released.wait()
        return {"y": inputs["x"] * 2}


def test_a_request_whose_client_hangs_up_while_queued_is_dropped_at_once() -> None:
    run = Gate()
    depths: list[int] = []
    batcher = Batcher(BatchingConfig(8, 0.0), run, on_depth=depths.append)

    async def main() -> tuple[Any, ...]:
        busy = asyncio.ensure_future(batcher.submit(rows(1), 1))
        await asyncio.sleep(0)  # the model is busy with 1
        hung_up = asyncio.Event()
        gone = asyncio.ensure_future(batcher.submit(rows(2), 1, client_gone=hung_up.wait))
        kept = asyncio.ensure_future(batcher.submit(rows(3), 1, client_gone=asyncio.Event().wait))
        await asyncio.sleep(0)
        assert depths[-1] == 2
        hung_up.set()  # the server saw the connection close
        await asyncio.wait([gone], timeout=5)
        assert gone.done() and depths[-1] == 1  # refused now, not when the model is free
        run.released.set()
        return tuple(await asyncio.gather(busy, gone, kept, return_exceptions=True))

    _, gone, kept = asyncio.run(main())

    assert run.calls == [[1.0], [3.0]]  # 2 never ran
    assert isinstance(gone, ClientClosedRequest) and gone.status_code == 499
    assert kept.outputs["y"].item() == 6


def test_a_full_queue_refuses_at_once_with_503_and_retry_after() -> None:
    run = Gate()
    refused: list[int] = []
    batcher = Batcher(
        BatchingConfig(8, 0.0, max_queue_size=2),
        run,
        label="model 'double' version 1",
        on_full=lambda: refused.append(1),
    )

    async def main() -> list[Any]:
        busy = asyncio.ensure_future(batcher.submit(rows(1), 1))
        await asyncio.sleep(0)
        queued = [asyncio.ensure_future(batcher.submit(rows(v), 1)) for v in (2, 3, 4)]
        await asyncio.sleep(0)
        assert queued[2].done()  # the third waiting request found the queue full
        run.released.set()
        return list(await asyncio.gather(busy, *queued, return_exceptions=True))

    answers = asyncio.run(main())

    assert [a.outputs["y"].item() for a in answers[:3]] == [2, 4, 6]
    full = answers[3]
    assert isinstance(full, ServiceOverloaded) and full.status_code == 503
    assert full.served_headers == {"Retry-After": "1"}
    assert full.message == (
        "model 'double' version 1 is overloaded: 2 requests already wait in its batch queue "
        "(batching.max_queue_size); retry shortly"
    )
    assert refused == [1] and run.calls == [[1.0], [2.0, 3.0]]


@pytest.mark.parametrize(
    ("batching", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be a whole number of rows >= 1, got 0"),
        ({"max_batch_size": "8"}, "max_batch_size must be a whole number of rows >= 1, got '8'"),
        ({"max_queue_delay_ms": 2}, "max_batch_size must be a whole number of rows >= 1, got None"),
        ({"max_batch_size": 8, "max_queue_delay_ms": -1}, "from 0 to 1000, got -1"),
        ({"max_batch_size": 8, "max_queue_delay_ms": True}, "from 0 to 1000, got True"),
        ({"max_batch_size": 8, "delay": 2}, "unknown key(s) ['delay']"),
        (
            {"max_batch_size": 8, "max_queue_size": 0},
            "batching.max_queue_size must be a whole number of requests >= 1, got 0",
        ),
    ],
)
def test_invalid_batching_configs_are_refused_naming_the_key(
    batching: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match="batching") as refused:
        parse_model_config({"batching": batching}, "models/titanic/config.yaml")
    assert message in str(refused.value)
    assert str(refused.value).startswith("models/titanic/config.yaml: ")


def test_batching_is_off_unless_configured() -> None:
    assert parse_model_config({}).batching is None
    assert parse_model_config({"batching": {}}).batching is None
    assert parse_model_config({"batching": {"max_batch_size": 16}}).batching == BatchingConfig(
        16, 0.0
    )
    assert BatchingConfig(16, 0.0).max_queue_size == 256
    queue = {"max_batch_size": 16, "max_queue_size": 4}
    assert parse_model_config({"batching": queue}).batching == BatchingConfig(16, 0.0, 4)


# --------------------------------------------------------------------------- through the app


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    (tmp_path / "double" / "1").mkdir(parents=True)
    (tmp_path / "double" / "config.yaml").write_text(
        "format: scale\n"
        "backend: {refuse_negative: true}\n"
        f"batching: {{max_batch_size: 8, max_queue_delay_ms: {LONG_DELAY_S * 1000:g}}}\n"
    )
    (tmp_path / "double" / "1" / "factor.txt").write_text("2")
    return tmp_path


@pytest.fixture
def app(repository: Path, spans: InMemorySpanExporter) -> Iterator[Any]:
    settings = RuntimeSettings(repository=repository, poll_interval_s=0, max_body_bytes=1024)
    yield create_app(settings, span_exporter=spans)


def post_all(app: Any, bodies: list[Any]) -> list[Any]:
    """Every body posted at once (one thread each: the test client's event loop serves
    them concurrently), then the metrics."""
    with TestClient(app) as client:
        while client.get("/v2/health/ready").status_code != 200:
            time.sleep(0.05)
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(
                pool.map(lambda body: client.post("/v1/models/double/eval", json=body), bodies)
            )
        metrics = client.get("/metrics").text
    return [*answers, metrics]


def test_concurrent_requests_to_a_batching_model_share_one_call(
    app: Any, spans: InMemorySpanExporter
) -> None:
    *answers, metrics = post_all(app, [{"x": v} for v in range(8)])

    assert [a.json()["outputs"]["y"] for a in answers] == [2.0 * v for v in range(8)]
    assert 'driftgate_batch_size_count{model="double",version="1"} 1.0' in metrics
    assert 'driftgate_queue_depth{model="double",version="1"} 0.0' in metrics
    infers = [s for s in spans.get_finished_spans() if s.name == "infer double"]
    waits = [s for s in spans.get_finished_spans() if s.name == "batch wait double"]
    assert len(infers) == 8 and len(waits) == 8
    assert {s.attributes["driftgate.batch.requests"] for s in infers} == {8}  # type: ignore[index]
    assert {s.attributes["driftgate.batch_size"] for s in infers} == {8}  # type: ignore[index]
    assert all(w.parent.span_id in {i.context.span_id for i in infers} for w in waits)  # type: ignore[union-attr]


def test_through_the_app_a_failing_row_fails_only_its_request(app: Any) -> None:
    *answers, metrics = post_all(app, [{"x": v} for v in (1, 2, -3, 4, 5, 6, 7, 8)])

    assert [a.status_code for a in answers] == [200, 200, 500, 200, 200, 200, 200, 200]
    assert "negative input" in answers[2].json()["error"]
    assert answers[3].json()["outputs"]["y"] == 8.0
    assert (
        'driftgate_batch_splits_total{model="double",reason="call_failed",version="1"} 1.0'
        in metrics
    )


def test_requests_waiting_on_a_drain_that_is_cancelled_are_cancelled_not_left_hanging() -> None:
    started = asyncio.Event()

    async def stuck_run(inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        started.set()
        await asyncio.sleep(3600)  # the process is shutting down mid-call
        raise AssertionError("unreachable")

    batcher = Batcher(BatchingConfig(2, LONG_DELAY_S), stuck_run)

    async def main() -> list[BaseException | Batched]:
        waiting = [asyncio.ensure_future(batcher.submit(rows(v), 1)) for v in (1, 2, 3)]
        await started.wait()  # 1 and 2 run together, 3 is queued behind them
        assert batcher._worker is not None
        batcher._worker.cancel()
        return list(await asyncio.gather(*waiting, return_exceptions=True))

    answers = asyncio.run(asyncio.wait_for(main(), 10))

    assert all(isinstance(a, asyncio.CancelledError) for a in answers)


# ------------------------------------------------------------------ through a real server


class Nap:
    """A pipeline processor that takes ``seconds`` per call and passes its inputs through."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.seconds = float(params["seconds"])

    def output_specs(self, input_specs: list[Any]) -> list[Any]:
        return list(input_specs)

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        time.sleep(self.seconds)
        return list(inputs)


NAP_PIPELINE = """\
inputs: [{name: x, datatype: FP32, shape: [-1, 1]}]
steps:
  - {name: nap, processor: "tests.runtime.test_batching:Nap", inputs: [x], outputs: [y],
     params: {seconds: 0.5}}
outputs: [y]
"""


@pytest.fixture
def napping_server(tmp_path: Path) -> Iterator[int]:
    """The runtime under uvicorn on a loopback port, serving ``nap`` (0.5 s per call)."""
    import socket
    import threading
    import urllib.request

    import uvicorn

    (tmp_path / "nap" / "1").mkdir(parents=True)
    (tmp_path / "nap" / "config.yaml").write_text("batching: {max_batch_size: 8}\n")
    (tmp_path / "nap" / "1" / "pipeline.yaml").write_text(NAP_PIPELINE)
    app = create_app(RuntimeSettings(repository=tmp_path, poll_interval_s=0))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready") as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "runtime never became ready"
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(20)
        listener.close()


def post_raw(port: int, value: float) -> Any:
    """An eval request written on a socket, left open for the caller to read or close."""
    import json
    import socket

    body = json.dumps({"x": value}).encode()
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(
        b"POST /v1/models/nap/eval HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json"
        b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    return connection


def test_a_queued_request_whose_client_hangs_up_never_runs(napping_server: int) -> None:
    """The handler was never told that its client had gone: the call ran for nobody."""
    import urllib.request

    busy = post_raw(napping_server, 1)  # the model is busy for 0.5 s
    time.sleep(0.15)
    for value in (2, 3):  # queued behind it, then the clients give up
        post_raw(napping_server, value).close()
    time.sleep(0.05)
    with busy:
        assert busy.recv(1024).startswith(b"HTTP/1.1 200 ")
    time.sleep(0.8)  # long enough for a second call to have run
    url = f"http://127.0.0.1:{napping_server}/metrics"
    with urllib.request.urlopen(url) as scraped:
        metrics = scraped.read().decode()
    assert 'driftgate_batch_size_count{model="nap",version="1"} 1.0' in metrics
    assert (
        'driftgate_runtime_requests_total{code="499",model="nap",protocol="eval",version="1"} 2.0'
        in metrics
    )
