"""Model calls run on the event loop only when calls like them are known to be quick."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from monitoring.metrics import RuntimeMetrics
from monitoring.tracing import build_tracer_provider
from runtime.inference import InferenceRequest
from runtime.placement import EVENT_LOOP, THREAD_POOL, CallPlacement, size_class
from runtime.predictor import Predictor
from runtime.repository import ModelVersion, VersionState
from tests.runtime.fakes import ScaleBackend


class Backend:
    """Stands for a model; only its identity matters to the placement."""


def test_size_classes_are_powers_of_two() -> None:
    assert [size_class(rows) for rows in (0, 1, 2, 3, 4, 7, 8, 1000)] == [0, 1, 2, 2, 3, 3, 4, 10]


def test_an_unmeasured_call_runs_in_the_thread_pool() -> None:
    assert CallPlacement(inline_max_s=0.001).choose(Backend(), rows=1) == THREAD_POOL


def test_a_call_known_to_be_quick_runs_on_the_event_loop() -> None:
    placement, backend = CallPlacement(inline_max_s=0.001), Backend()
    placement.observe(backend, rows=1, seconds=0.0002)
    assert placement.choose(backend, rows=1) == EVENT_LOOP
    # Another size class, or another backend (a reloaded version), is measured afresh.
    assert placement.choose(backend, rows=64) == THREAD_POOL
    assert placement.choose(Backend(), rows=1) == THREAD_POOL


def test_a_slow_call_stays_in_the_thread_pool() -> None:
    placement, backend = CallPlacement(inline_max_s=0.001), Backend()
    placement.observe(backend, rows=1, seconds=0.005)
    assert placement.choose(backend, rows=1) == THREAD_POOL


def test_one_slow_call_does_not_move_a_quick_model_off_the_event_loop() -> None:
    placement, backend = CallPlacement(inline_max_s=0.001), Backend()
    placement.observe(backend, rows=2, seconds=0.0002)
    placement.observe(backend, rows=3, seconds=0.4)  # preempted: counted as 2 ms, not 400
    assert placement.expected_s(backend, rows=2) == pytest.approx(0.0002 + 0.2 * 0.0018)
    assert placement.choose(backend, rows=2) == EVENT_LOOP


def test_calls_that_stay_slow_go_back_to_the_thread_pool() -> None:
    placement, backend = CallPlacement(inline_max_s=0.001), Backend()
    placement.observe(backend, rows=2, seconds=0.0002)
    choices = []
    for _ in range(3):
        placement.observe(backend, rows=2, seconds=0.05)
        choices.append(placement.choose(backend, rows=2))
    assert choices == [EVENT_LOOP, EVENT_LOOP, THREAD_POOL]


def test_a_zero_limit_never_runs_inline() -> None:
    placement, backend = CallPlacement(inline_max_s=0.0), Backend()
    placement.observe(backend, rows=1, seconds=0.0)
    assert placement.choose(backend, rows=1) == THREAD_POOL


def test_a_retired_backend_is_forgotten() -> None:
    placement, backend = CallPlacement(inline_max_s=0.001), Backend()
    placement.observe(backend, rows=1, seconds=0.0001)
    del backend
    assert len(placement._seconds) == 0


class ThreadRecordingBackend(ScaleBackend):
    """Scales its input and remembers which thread ran each call; ``delay_s`` slows it."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__({})
        self.factor = 2.0
        self.delay_s = delay_s
        self.threads: list[str] = []

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.threads.append(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        return super().predict(inputs)


def loaded(backend: ThreadRecordingBackend) -> ModelVersion:
    return ModelVersion(
        model="scale",
        version=1,
        path=Path("unused"),
        state=VersionState.READY,
        format=backend.format,
        backend=backend,
        metadata=backend.metadata(),
    )


def run_calls(backend: ThreadRecordingBackend, calls: int) -> tuple[RuntimeMetrics, list[str]]:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    spans = InMemorySpanExporter()
    tracer = build_tracer_provider("test", spans).get_tracer("test")
    predictor = Predictor(metrics, tracer, threads=2, inline_max_s=0.001)
    model = loaded(backend)

    async def serve() -> None:
        for _ in range(calls):
            request = InferenceRequest(inputs={"x": np.ones((1, 1), dtype=np.float32)})
            response = await predictor.infer(model, request)
            assert response.outputs["y"].tolist() == [[2.0]]

    try:
        asyncio.run(serve())
    finally:
        predictor.close()
    placements = [
        str((span.attributes or {})["driftgate.inference.placement"])
        for span in spans.get_finished_spans()
    ]
    return metrics, placements


def test_a_quick_model_moves_to_the_event_loop_after_its_first_call() -> None:
    backend = ThreadRecordingBackend()
    metrics, placements = run_calls(backend, calls=3)
    assert backend.threads[0].startswith("inference")
    assert backend.threads[1:] == [threading.main_thread().name] * 2
    assert placements == [THREAD_POOL, EVENT_LOOP, EVENT_LOOP]
    calls = metrics.registry.get_sample_value
    labels = {"model": "scale", "version": "1"}
    assert calls("driftgate_inference_calls_total", {**labels, "placement": EVENT_LOOP}) == 2
    assert calls("driftgate_inference_calls_total", {**labels, "placement": THREAD_POOL}) == 1


def test_a_slow_model_keeps_to_the_thread_pool() -> None:
    backend = ThreadRecordingBackend(delay_s=0.005)
    _, placements = run_calls(backend, calls=3)
    assert all(name.startswith("inference") for name in backend.threads)
    assert placements == [THREAD_POOL] * 3
