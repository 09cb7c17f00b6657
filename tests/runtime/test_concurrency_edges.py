"""Edges of the runtime's concurrency code, each one a way load or hang-ups could leak.

- An overload refusal (503) is logged as a WARNING at most once a minute, with a count;
  never an ERROR per refusal.
- A request whose task is cancelled is counted as 499, not as a success.
- A lone batched request on an idle queue leaves when its client goes while its call
  waits for an inference thread, as an unbatched one does.
- A call that cannot be handed to the threads (the predictor is closed) gives back its
  place among the waiting calls.
- An explanation cancelled in the turn its slot is granted gives the slot back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from monitoring.metrics import RuntimeMetrics
from monitoring.tracing import build_tracer_provider
from runtime.app import create_app
from runtime.batching_config import BatchingConfig
from runtime.errors import (
    ClientClosedRequest,
    InferenceServerError,
    ModelNotReady,
    ServiceOverloaded,
)
from runtime.explain_slots import ExplainSlots
from runtime.inference import InferenceRequest
from runtime.predictor import Predictor
from runtime.refusal_log import RefusalLog
from runtime.routes.state import RuntimeState
from runtime.settings import RuntimeSettings
from runtime.waiting import WaitingCalls
from tests.runtime.fakes import ScaleBackend
from tests.runtime.test_waiting_calls import BlockingBackend, loaded, until_running


def new_state(tmp_path: Path) -> tuple[Any, RuntimeState]:
    app = create_app(RuntimeSettings(repository=tmp_path, poll_interval_s=0))
    return app, app.state.runtime


class Records(logging.Handler):
    """The records of one logger, caught there (the app's logging config may not let them
    reach the root logger, where ``caplog`` listens)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            ServiceOverloaded("model 'm' version 1 is overloaded"),
            "refused 1 request(s) with 503 as overloaded, the latest: model 'm' version 1 is "
            "overloaded; refusals in the next 60 s are counted "
            "(driftgate_runtime_overload_rejections_total, driftgate_batch_rejections_total), "
            "not logged",
        ),
        (  # while a version loads (or after it failed to), every request was an ERROR line
            ModelNotReady("model 'm' version 1 is loading"),
            "refused 1 request(s) with 503 as the model version is not ready, the latest: "
            "model 'm' version 1 is loading; refusals in the next 60 s are counted "
            "(driftgate_runtime_requests_total with code 503; the load in "
            "driftgate_model_loads_total), not logged",
        ),
    ],
    ids=["overloaded", "not-ready"],
)
def test_expected_refusals_are_one_warning_a_minute_never_an_error_each(
    tmp_path: Path, error: InferenceServerError, line: str
) -> None:
    app, state = new_state(tmp_path)
    handle = app.exception_handlers[InferenceServerError]
    caught, logger = Records(), logging.getLogger("driftgate.runtime")
    logger.addHandler(caught)
    try:
        for _ in range(100):
            assert handle(None, error).status_code == 503
    finally:
        logger.removeHandler(caught)
        state.predictor.close()
    assert [(r.levelname, r.getMessage()) for r in caught.records] == [("WARNING", line)]


def test_the_refusal_log_counts_what_it_did_not_log(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    refusals = RefusalLog(logging.getLogger("test.refusals"), 60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        refusals.refused("first")
        for _ in range(5):
            now[0] += 10.0
            refusals.refused("later")  # at 110..150 s: counted
        now[0] += 10.0
        refusals.refused("latest")  # at 160 s: a minute on
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "refused 1 request(s) with 503 as overloaded, the latest: first",
        "refused 6 request(s) with 503 as overloaded, the latest: latest",
    ]


def test_a_cancelled_request_is_counted_as_499_not_200(tmp_path: Path) -> None:
    _, state = new_state(tmp_path)

    async def request() -> None:
        async with state.measure("v2", "m"):
            await asyncio.Event().wait()  # queued, say, when the server cancels it

    async def main() -> None:
        task = asyncio.ensure_future(request())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    finally:
        state.predictor.close()
    counted = {
        sample.labels["code"]: sample.value
        for metric in state.registry.collect()
        if metric.name == "driftgate_runtime_requests"
        for sample in metric.samples
        if sample.name == "driftgate_runtime_requests_total"
    }
    assert counted == {"499": 1.0}


def new_predictor(threads: int = 1) -> Predictor:
    metrics = RuntimeMetrics(CollectorRegistry())
    tracer = build_tracer_provider("test", InMemorySpanExporter()).get_tracer("test")
    return Predictor(metrics, tracer, threads=threads)


def test_a_lone_batched_request_leaves_when_its_client_goes_while_it_waits_for_a_thread() -> None:
    predictor, blocking = new_predictor(threads=1), BlockingBackend()
    holder = loaded(blocking)  # unbatched: holds the only thread
    batched_backend = ScaleBackend({})
    batched_backend.factor = 3.0
    batched = loaded(batched_backend)
    batched.model, batched.batching = "batched", BatchingConfig(8, 0.0)

    async def main() -> None:
        one_row = {"x": np.ones((1, 1), dtype=np.float32)}
        running = asyncio.ensure_future(predictor.infer(holder, InferenceRequest(one_row)))
        await until_running(blocking)
        gone = asyncio.Event()
        lone = asyncio.ensure_future(
            predictor.infer(batched, InferenceRequest(one_row), client_gone=gone.wait)
        )
        await asyncio.sleep(0.01)
        assert not lone.done()  # the queue was idle: its call waits for the thread
        gone.set()
        with pytest.raises(ClientClosedRequest):
            await asyncio.wait_for(lone, timeout=2)  # at once, not after the other model
        blocking.released.set()
        await running
        await batched.batcher.until_idle()  # type: ignore[union-attr]

    try:
        asyncio.run(main())
    finally:
        predictor.close()
    assert batched_backend.calls == []  # it never ran


def test_a_call_refused_by_a_closed_executor_gives_its_waiting_place_back() -> None:
    calls = WaitingCalls(limit=1, label="model 'm' version 1", on_full=lambda: None)
    executor = ThreadPoolExecutor(max_workers=1)
    executor.shutdown()  # as Predictor.close() does

    async def main() -> None:
        with pytest.raises(RuntimeError, match="shutdown"):
            await calls.run(executor, lambda: 1)

    asyncio.run(main())
    assert calls.waiting == 0


class HeldExecutor(Executor):
    """Runs nothing: the test settles each submitted work's future on the event loop."""

    def __init__(self) -> None:
        self.submitted: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        self.submitted.append(future)
        return future


async def settled(task: Awaitable[Any]) -> None:
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("turns", range(6))
@pytest.mark.parametrize("watched", [False, True], ids=["unwatched", "watched"])
def test_an_explanation_cancelled_as_its_slot_is_granted_gives_the_slot_back(
    turns: int, watched: bool
) -> None:
    """Cancelled ``turns`` event-loop turns after the slot frees: at one of them the slot
    is granted and the request cancelled in the same turn."""
    slots, executor = ExplainSlots(running=1, max_waiting=4), HeldExecutor()
    client_gone = asyncio.Event().wait if watched else None

    def explain() -> asyncio.Future[Any]:
        return asyncio.ensure_future(
            slots.run(
                executor,
                lambda stop: None,
                version="v",
                label="model 'm' version 1",
                on_full=lambda: None,
                client_gone=client_gone,
            )
        )

    async def main() -> None:
        first = explain()
        await asyncio.sleep(0.01)
        assert len(executor.submitted) == 1  # the first holds the only slot
        second = explain()
        await asyncio.sleep(0.01)  # it waits for the slot
        executor.submitted[0].set_result("first")  # its thread is done: the slot frees
        for _ in range(turns):
            await asyncio.sleep(0)
        second.cancel()
        for _ in range(3):
            await asyncio.sleep(0)
        for future in executor.submitted[1:]:  # the second ran after all: let it end
            future.set_result("second")
        await settled(first)
        await settled(second)
        await asyncio.sleep(0)
        third = explain()
        await asyncio.sleep(0.01)
        assert len(executor.submitted) in (2, 3)
        assert executor.submitted[-1].running(), "the slot was never given back"
        executor.submitted[-1].set_result("third")
        assert await asyncio.wait_for(third, timeout=1) == "third"

    asyncio.run(main())
