"""A model version's backend is never unloaded while a call on it runs in a thread, and a
version runs one batched call at a time across hang-ups, cancellations and changes of
``batching:``.

A retired version (a newer one arrived, its folder went) is unloaded by the last request
that holds it (``runtime.repository``). A request that leaves early (its client hung up, its
task was cancelled) therefore holds its version until the thread running its call is done.

The model is ``held``: ``y = 2x``, whose calls of more than one row hold their thread until
the test opens ``Held.opened``; it records every unload and whether a call was running then.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import runtime.backends
from monitoring.metrics import RuntimeMetrics
from monitoring.tracing import build_tracer_provider
from runtime.app import create_app
from runtime.batching import Batcher
from runtime.batching_config import BatchingConfig
from runtime.errors import ClientClosedRequest
from runtime.explain_slots import ExplainSlots
from runtime.inference import InferenceRequest, InferenceResponse
from runtime.predictor import Predictor
from runtime.repository import ModelRepository, ModelVersion
from runtime.settings import RuntimeSettings
from runtime.tensors import ModelMetadata, TensorSpec


class Held:
    """What the ``held`` backends of one test share with it (reset for every test)."""

    opened = threading.Event()
    waiting = threading.Semaphore(0)  # one permit per call that reached the gate
    lock = threading.Lock()
    calls: list[int] = []  # rows of every call
    active = 0  # calls running now
    most_active = 0
    unloads: list[str] = []  # "idle" or "under a running call", per unload

    @classmethod
    def reset(cls) -> None:
        cls.opened, cls.waiting = threading.Event(), threading.Semaphore(0)
        cls.calls, cls.active, cls.most_active, cls.unloads = [], 0, 0, []


class HeldBackend:
    format = "held"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def load(self, path: Path) -> None:
        pass

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            inputs=(TensorSpec("x", "FP32", (-1,)),),
            outputs=(TensorSpec("y", "FP32", (-1,)),),
            platform=self.format,
        )

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(inputs["x"])
        with Held.lock:
            Held.calls.append(rows)
            Held.active += 1
            Held.most_active = max(Held.most_active, Held.active)
        try:
            if rows > 1:
                Held.waiting.release()
                assert Held.opened.wait(10), "the test never opened the gate"
            return {"y": (inputs["x"] * 2).astype(np.float32)}
        finally:
            with Held.lock:
                Held.active -= 1

    def unload(self) -> None:
        with Held.lock:
            Held.unloads.append("under a running call" if Held.active else "idle")


@pytest.fixture(autouse=True)
def held_format(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(runtime.backends.FORMATS, "held", f"{__name__}:HeldBackend")
    Held.reset()
    yield
    Held.opened.set()  # never leave a thread waiting on a failed test


def held_repository(root: Path, config: str = "format: held\n") -> Path:
    (root / "held" / "1").mkdir(parents=True)
    (root / "held" / "1" / "model.txt").write_text("held\n")
    (root / "held" / "config.yaml").write_text(config)
    return root


def add_version_2(root: Path) -> None:
    (root / "held" / "2").mkdir()
    (root / "held" / "2" / "model.txt").write_text("held\n")


def until_at_gate() -> None:
    assert Held.waiting.acquire(timeout=10), "no call reached the gate"


def until_unloaded(seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not Held.unloads:
        assert time.monotonic() < deadline, "the retired version was never unloaded"
        time.sleep(0.02)


class Server:
    """The runtime app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: RuntimeSettings, graceful_s: int | None = None) -> None:
        self.app = create_app(settings)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=graceful_s)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._listener]})

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(self.url("/v2/health/ready")) as ready:
                    if ready.status == 200:
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, "runtime never became ready"
            time.sleep(0.05)

    def __exit__(self, *_: object) -> None:
        Held.opened.set()
        self.server.should_exit = True
        self.thread.join(20)
        self._listener.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def send(self, path: str, body: Any) -> socket.socket:
        data = json.dumps(body).encode()
        connection = socket.create_connection(("127.0.0.1", self.port))
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        return connection

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(self.url("/metrics")) as scraped:
            text = scraped.read().decode()
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{{wanted}}} "):
                return float(line.split()[-1])
        return 0.0


def read_answer(connection: socket.socket) -> tuple[int, Any]:
    connection.settimeout(10)
    response = http.client.HTTPResponse(connection)
    try:
        response.begin()
        return response.status, json.loads(response.read())
    finally:
        response.close()
        connection.close()


EVAL_1 = "/v1/models/held/versions/1/eval"


# --- through the server -------------------------------------------------------------------


def test_a_batched_request_whose_client_hangs_up_holds_its_retired_version_until_its_call_ends(
    tmp_path: Path,
) -> None:
    """Its batch runs in a thread when the client goes and a newer version retires its
    version: the version is unloaded once that call has ended, not when the client went."""
    config = "format: held\nbatching: {max_batch_size: 8, max_queue_delay_ms: 1}\n"
    settings = RuntimeSettings(
        repository=held_repository(tmp_path, config),
        poll_interval_s=0,
        inference_threads=2,
        inline_inference_max_s=0,
    )
    with Server(settings) as served:
        gone = served.send(EVAL_1, {"x": [1, 2]})  # queued, then run by the drain
        until_at_gate()
        add_version_2(tmp_path)
        served.app.state.runtime.repository.scan()  # version 1 retired, still held
        gone.close()
        time.sleep(0.3)  # the server sees the connection close

        assert Held.unloads == []  # the call still runs: version 1 stays loaded
        Held.opened.set()
        until_unloaded()
        assert Held.unloads == ["idle"]
        labels = {"model": "held", "version": "1", "protocol": "eval"}
        assert served.metric("driftgate_runtime_requests_total", code="499", **labels) == 1


def test_a_request_cancelled_at_shutdown_holds_its_version_until_its_thread_is_done(
    tmp_path: Path,
) -> None:
    """uvicorn cancels the requests still running after ``timeout_graceful_shutdown``, then
    the app closes its repository: the version whose call still runs is unloaded only
    once its thread is done with it."""
    settings = RuntimeSettings(
        repository=held_repository(tmp_path),
        poll_interval_s=0,
        inference_threads=1,
        inline_inference_max_s=0,
    )
    served = Server(settings, graceful_s=1)
    with served:
        running = served.send(EVAL_1, {"x": [1, 2]})
        until_at_gate()
        served.server.should_exit = True
        time.sleep(1.6)  # shutdown: 0.1 s, the grace period, the cancellation, the lifespan

        assert Held.unloads == []  # the request's task was cancelled; its call runs on
        Held.opened.set()
        served.thread.join(10)
        assert not served.thread.is_alive()
        assert Held.unloads == ["idle"]
        running.close()


# --- in process ---------------------------------------------------------------------------


def new_predictor(threads: int = 2) -> Predictor:
    metrics = RuntimeMetrics(CollectorRegistry())
    tracer = build_tracer_provider("test", InMemorySpanExporter()).get_tracer("test")
    return Predictor(metrics, tracer, threads=threads)


def infer(predictor: Predictor, model: ModelVersion, rows: int) -> asyncio.Task[InferenceResponse]:
    request = InferenceRequest(inputs={"x": np.arange(1, rows + 1, dtype=np.float32)})
    return asyncio.ensure_future(predictor.infer(model, request))


async def opened_at_the_end(test: Coroutine[Any, Any, None]) -> None:
    """``test``, then the gate opened even when it failed: ``asyncio.run`` waits for the
    calls still in a thread before it returns."""
    try:
        await test
    finally:
        Held.opened.set()


async def at_gate() -> None:
    assert await asyncio.to_thread(Held.waiting.acquire, True, 10), "no call reached the gate"


def test_a_cancelled_call_keeps_the_batch_queue_busy_until_its_thread_is_done(
    tmp_path: Path,
) -> None:
    """Cancelled (twice) while an idle queue runs its call at once, in its own task: the
    request ends with its thread, and the next call waits for it, one call at a time."""
    repository = ModelRepository(
        held_repository(tmp_path, "format: held\nbatching: {max_batch_size: 8}\n")
    )
    repository.scan()
    predictor = new_predictor()

    async def main() -> None:
        model = repository.acquire("held")
        first = infer(predictor, model, 2)
        await at_gate()
        first.cancel()
        await asyncio.sleep(0.05)
        first.cancel()  # cancelled again while it waits for its thread
        later = infer(predictor, model, 1)
        await asyncio.sleep(0.3)
        assert not first.done() and not later.done()  # the queue is still busy

        Held.opened.set()
        answered = await asyncio.wait_for(later, 5)
        assert answered.outputs["y"].tolist() == [2.0]
        with pytest.raises(asyncio.CancelledError):
            await first

    try:
        asyncio.run(opened_at_the_end(main()))
    finally:
        predictor.close()
        repository.close()
    assert Held.calls == [2, 1]
    assert Held.most_active == 1


def test_switching_batching_on_waits_for_the_unbatched_calls_still_running(
    tmp_path: Path,
) -> None:
    """A version without batching runs a call; its config.yaml turns batching on: the first
    batched call waits for that one (one call at a time from then on)."""
    root = held_repository(tmp_path)
    repository = ModelRepository(root)
    repository.scan()
    predictor = new_predictor(threads=4)

    async def main() -> None:
        model = repository.acquire("held")
        unbatched = infer(predictor, model, 2)
        await at_gate()
        (root / "held" / "config.yaml").write_text("format: held\nbatching: {max_batch_size: 8}\n")
        await asyncio.to_thread(repository.scan)
        assert model.batching is not None
        batched = infer(predictor, model, 1)
        await asyncio.sleep(0.3)
        assert not batched.done()  # queued behind the unbatched call

        Held.opened.set()
        first, second = await asyncio.wait_for(asyncio.gather(unbatched, batched), 5)
        assert first.outputs["y"].tolist() == [2.0, 4.0]
        assert second.outputs["y"].tolist() == [2.0]

    try:
        asyncio.run(opened_at_the_end(main()))
    finally:
        predictor.close()
        repository.close()
    assert Held.calls == [2, 1]
    assert Held.most_active == 1


def test_a_queued_request_of_several_rows_whose_client_hangs_up_behind_another_gets_499() -> None:
    """Leaving the queue finds the request by identity: comparing two queued requests'
    arrays of several elements raised ValueError (a 500) instead of ClientClosedRequest."""

    async def run(inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        await opened.wait()
        return inputs

    async def main() -> None:
        batcher = Batcher(BatchingConfig(2, 0.0), run)
        busy = asyncio.ensure_future(batcher.submit({"x": np.ones((2, 1))}, 2))
        await asyncio.sleep(0.01)
        ahead = asyncio.ensure_future(batcher.submit({"x": np.ones((2, 1))}, 2))
        gone = asyncio.Event()
        leaving = asyncio.ensure_future(batcher.submit({"x": np.ones((2, 1))}, 2, gone.wait))
        await asyncio.sleep(0.01)
        gone.set()
        with pytest.raises(ClientClosedRequest):
            await asyncio.wait_for(leaving, 5)
        opened.set()
        await asyncio.wait_for(asyncio.gather(busy, ahead), 5)

    opened = asyncio.Event()
    asyncio.run(main())


def test_an_explanation_cancelled_twice_still_ends_only_with_its_thread() -> None:
    started, release = threading.Event(), threading.Event()

    def work(stop: threading.Event) -> str:
        started.set()
        assert release.wait(10)
        return "explained"

    async def main() -> None:
        slots = ExplainSlots(running=1, max_waiting=1)
        explaining = asyncio.ensure_future(
            slots.run(executor, work, version="v", label="m", on_full=lambda: None)
        )
        assert await asyncio.to_thread(started.wait, 10)
        for _ in range(2):
            explaining.cancel()
            await asyncio.sleep(0.05)
        assert not explaining.done()  # its thread still runs the model
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(explaining, 5)

    with ThreadPoolExecutor(max_workers=1) as executor:
        asyncio.run(main())
