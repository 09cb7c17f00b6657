"""Calls waiting for an inference thread are bounded per model version: beyond
``DRIFTGATE_MAX_WAITING_CALLS`` a request is refused at once with 503, not queued."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from monitoring.metrics import RuntimeMetrics
from monitoring.tracing import build_tracer_provider
from runtime.errors import ServiceOverloaded
from runtime.inference import InferenceRequest, InferenceResponse
from runtime.predictor import Predictor
from runtime.repository import ModelVersion, VersionState
from runtime.settings import RuntimeSettings, RuntimeSettingsError
from tests.runtime.fakes import ScaleBackend

REJECTIONS = "driftgate_runtime_overload_rejections_total"


class BlockingBackend(ScaleBackend):
    """A slow model: every call holds its thread until the test releases it."""

    def __init__(self) -> None:
        super().__init__({})
        self.factor = 2.0
        self.released = threading.Event()
        self.running = threading.Semaphore(0)  # one permit per call that has started

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.running.release()
        assert self.released.wait(10), "the test never released the model"
        return super().predict(inputs)


def loaded(backend: ScaleBackend, version: int = 1) -> ModelVersion:
    return ModelVersion(
        model="slow",
        version=version,
        path=Path("unused"),
        state=VersionState.READY,
        format=backend.format,
        backend=backend,
        metadata=backend.metadata(),
    )


def new_predictor(max_waiting_calls: int) -> Predictor:
    metrics = RuntimeMetrics(CollectorRegistry())
    tracer = build_tracer_provider("test", InMemorySpanExporter()).get_tracer("test")
    return Predictor(metrics, tracer, threads=1, max_waiting_calls=max_waiting_calls)


def infer(
    predictor: Predictor, model: ModelVersion, value: float
) -> asyncio.Task[InferenceResponse]:
    request = InferenceRequest(inputs={"x": np.full((1, 1), value, dtype=np.float32)})
    return asyncio.ensure_future(predictor.infer(model, request))


async def until_running(backend: BlockingBackend) -> None:
    """Wait (off the loop) until one more call has a thread."""
    assert await asyncio.to_thread(backend.running.acquire, True, 10)


def answer(task: asyncio.Task[InferenceResponse]) -> float:
    return float(task.result().outputs["y"].item())


def rejections(predictor: Predictor, version: str = "1") -> float:
    labels = {"model": "slow", "version": version, "reason": "waiting_calls"}
    return predictor.metrics.registry.get_sample_value(REJECTIONS, labels) or 0.0


def test_a_request_beyond_the_waiting_limit_is_refused_at_once_with_503() -> None:
    predictor, backend = new_predictor(max_waiting_calls=2), BlockingBackend()
    model = loaded(backend)

    async def main() -> None:
        running = infer(predictor, model, 1)
        await until_running(backend)
        waiting = [infer(predictor, model, value) for value in (2, 3)]
        await asyncio.sleep(0.01)
        refused = infer(predictor, model, 4)
        with pytest.raises(ServiceOverloaded) as caught:
            await asyncio.wait_for(refused, timeout=1)  # at once, not after the model
        overloaded = caught.value
        assert overloaded.status_code == 503
        assert overloaded.served_headers == {"Retry-After": "1"}
        assert overloaded.message == (
            "model 'slow' version 1 is overloaded: 2 requests already wait for an inference "
            "thread (DRIFTGATE_MAX_WAITING_CALLS); retry shortly"
        )
        assert not running.done() and not any(task.done() for task in waiting)

        # Capacity frees: the waiting requests are served, and new ones are taken again.
        backend.released.set()
        await asyncio.gather(running, *waiting)
        assert [answer(task) for task in (running, *waiting)] == [2.0, 4.0, 6.0]
        later = [infer(predictor, model, value) for value in (5, 6)]  # both wait at first
        await asyncio.gather(*later)
        assert [answer(task) for task in later] == [10.0, 12.0]

    try:
        asyncio.run(main())
    finally:
        predictor.close()
    assert rejections(predictor) == 1


def test_a_waiting_request_that_is_cancelled_gives_its_place_back() -> None:
    predictor, backend = new_predictor(max_waiting_calls=1), BlockingBackend()
    model = loaded(backend)

    async def main() -> None:
        running = infer(predictor, model, 1)
        await until_running(backend)
        gone = infer(predictor, model, 2)
        await asyncio.sleep(0.01)
        gone.cancel()  # its client hung up while it waited for a thread
        await asyncio.gather(gone, return_exceptions=True)
        taken = infer(predictor, model, 3)
        await asyncio.sleep(0.01)
        assert not taken.done()  # admitted, waiting; not refused
        backend.released.set()
        await asyncio.gather(running, taken)
        assert answer(taken) == 6.0

    try:
        asyncio.run(main())
    finally:
        predictor.close()
    assert rejections(predictor) == 0
    assert backend.calls == [1, 1]  # the cancelled request never ran


def test_one_overloaded_version_does_not_refuse_another() -> None:
    predictor, backend, other_backend = new_predictor(1), BlockingBackend(), BlockingBackend()
    other_backend.released = backend.released
    busy, other = loaded(backend, version=1), loaded(other_backend, version=2)

    async def main() -> None:
        running = infer(predictor, busy, 1)
        await until_running(backend)
        waiting = infer(predictor, busy, 2)
        await asyncio.sleep(0.01)
        with pytest.raises(ServiceOverloaded):
            await infer(predictor, busy, 3)
        taken = infer(predictor, other, 4)
        await asyncio.sleep(0.01)
        assert not taken.done()
        backend.released.set()
        await asyncio.gather(running, waiting, taken)
        assert answer(taken) == 8.0

    try:
        asyncio.run(main())
    finally:
        predictor.close()
    assert rejections(predictor, "1") == 1 and rejections(predictor, "2") == 0


def test_calls_on_the_event_loop_are_not_counted() -> None:
    """A quick model runs inline once measured; it never waits for a thread, so even a
    limit of one never refuses it, however many requests arrive together."""
    metrics = RuntimeMetrics(CollectorRegistry())
    tracer = build_tracer_provider("test", InMemorySpanExporter()).get_tracer("test")
    predictor = Predictor(metrics, tracer, threads=1, inline_max_s=1.0, max_waiting_calls=1)
    backend = ScaleBackend({})
    backend.factor = 2.0
    model = loaded(backend)

    async def main() -> None:
        await infer(predictor, model, 1)  # measured in a thread
        together = [infer(predictor, model, value) for value in range(20)]
        await asyncio.gather(*together)

    try:
        asyncio.run(main())
    finally:
        predictor.close()
    labels = {"model": "slow", "version": "1", "placement": "event_loop"}
    assert metrics.registry.get_sample_value("driftgate_inference_calls_total", labels) == 20
    assert rejections(predictor) == 0


def test_the_limit_is_a_setting_of_at_least_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DRIFTGATE_MAX_WAITING_CALLS", raising=False)
    assert RuntimeSettings(repository=tmp_path).max_waiting_calls == 256
    monkeypatch.setenv("DRIFTGATE_MAX_WAITING_CALLS", "32")
    assert RuntimeSettings(repository=tmp_path).max_waiting_calls == 32
    for bad in ("0", "abc", "1.5"):
        monkeypatch.setenv("DRIFTGATE_MAX_WAITING_CALLS", bad)
        with pytest.raises(RuntimeSettingsError, match="DRIFTGATE_MAX_WAITING_CALLS"):
            RuntimeSettings(repository=tmp_path)


def test_the_runtime_takes_the_limit_from_its_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from runtime.app import create_app

    monkeypatch.setenv("DRIFTGATE_MAX_WAITING_CALLS", "7")
    app = create_app(RuntimeSettings(repository=tmp_path))
    predictor = app.state.runtime.predictor
    try:
        assert predictor.max_waiting_calls == 7
    finally:
        predictor.close()
