"""An explanation of a version with ``batching:`` never calls the model beside a merged call.

A batched version runs one call at a time (``runtime.batching``); an explanation calls the
same backend from its own inference thread. Both take the version's turn
(``runtime.call_turns``): an explanation's call waits for the merged call in progress, a
merged call waits for the explanation's call in progress (one chunk, not the whole
explanation), and the model sees one call at a time. A merged call that would run inline
on the event loop waits for its turn there, holding no inference thread (with one thread,
the explanation holds it to its end), and leaves if its client goes meanwhile.

Through the runtime under uvicorn with the ``gate`` model of ``test_overload_and_hangups``,
whose calls of more than one row hold their thread until the test opens the gate.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

import runtime.backends
from runtime.batching_config import BatchingConfig
from runtime.call_turns import CallTurns
from runtime.errors import ClientClosedRequest
from runtime.inference import InferenceRequest
from runtime.predictor import Predictor
from runtime.repository import ModelVersion
from runtime.settings import RuntimeSettings
from tests.runtime.fakes import ScaleBackend
from tests.runtime.test_concurrency_edges import new_predictor
from tests.runtime.test_overload_and_hangups import (
    EVAL,
    EXPLAIN,
    INSTANCE,
    Gate,
    Runtime,
    answer,
    answered_within,
    gate_repository,
    until_at_gate,
)
from tests.runtime.test_waiting_calls import loaded

BATCHED = "format: gate\nbatching: {max_batch_size: 8}\n"


@pytest.fixture(autouse=True)
def gate_format(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    gate = "tests.runtime.test_overload_and_hangups:GateBackend"
    monkeypatch.setitem(runtime.backends.FORMATS, "gate", gate)
    Gate.reset()
    yield
    Gate.opened.set()  # never leave a server thread waiting on a failed test


def batched_runtime(tmp_path: Path) -> Runtime:
    return Runtime(
        RuntimeSettings(
            repository=gate_repository(tmp_path, BATCHED),
            poll_interval_s=0,
            inference_threads=4,
            inline_inference_max_s=0,
        )
    )


def test_an_explanation_waits_for_the_merged_call_in_progress(tmp_path: Path) -> None:
    with batched_runtime(tmp_path) as served:
        merged = served.send(EVAL, {"a": [1, 2], "b": [3, 4]})  # two rows: held at the gate
        until_at_gate()
        explained = served.send(EXPLAIN, INSTANCE)
        time.sleep(0.5)
        assert Gate.calls == [2]  # the explanation's first call waits for its turn

        Gate.opened.set()
        assert answer(merged)[2]["outputs"]["y"] == [3.0, 8.0]
        status, _, body = answer(explained)
        assert status == 200, body
        assert len(Gate.calls) > 1
        assert Gate.most_active == 1


def test_a_merged_call_waits_for_the_explanation_call_in_progress(tmp_path: Path) -> None:
    with batched_runtime(tmp_path) as served:
        explained = served.send(EXPLAIN, INSTANCE)
        until_at_gate()  # the explanation's first call (many rows) holds the gate
        predicted = served.send(EVAL, INSTANCE)
        assert not answered_within(predicted, 0.5)

        Gate.opened.set()
        status, _, body = answer(predicted)
        assert (status, body["outputs"]["y"]) == (200, -3.0)
        status, _, body = answer(explained)
        assert status == 200, body
        assert Gate.most_active == 1


class HeldAboveOneRow(ScaleBackend):
    """``y = 2 x``; a call of more rows than one (an explanation's) holds its thread until
    the test releases it."""

    def __init__(self) -> None:
        super().__init__({})
        self.factor = 2.0
        self.held = threading.Event()
        self.released = threading.Event()

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(inputs["x"]) > 1:
            self.held.set()
            assert self.released.wait(10), "the test never released the model"
        return super().predict(inputs)


def quick_batched(threads: int) -> tuple[Predictor, HeldAboveOneRow, ModelVersion]:
    """A predictor, and a batched version whose one-row calls are known to run inline."""
    predictor, backend = new_predictor(threads=threads), HeldAboveOneRow()
    version = loaded(backend)
    version.batching = BatchingConfig(8, 0.0)
    predictor.placement.inline_max_s = 1.0
    predictor.placement.observe(backend, 1, 0.0)  # one-row calls are known to be quick
    return predictor, backend, version


ONE_ROW = {"x": np.ones((1, 1), dtype=np.float32)}
TWO_ROWS = {"x": np.ones((2, 1), dtype=np.float32)}


def test_a_merged_call_that_would_run_inline_waits_for_its_turn_on_the_event_loop() -> None:
    predictor, backend, version = quick_batched(threads=2)

    async def main() -> None:
        call = predictor.explanation_call(version)  # an explanation's call, in its thread
        explaining = asyncio.ensure_future(asyncio.to_thread(call, TWO_ROWS))
        assert await asyncio.to_thread(backend.held.wait, 10)
        predicting = asyncio.ensure_future(predictor.infer(version, InferenceRequest(ONE_ROW)))
        await asyncio.sleep(0.1)  # the event loop is free meanwhile
        assert not predicting.done()
        backend.released.set()
        response = await asyncio.wait_for(predicting, 5)
        assert response.outputs["y"].tolist() == [[2.0]]
        await explaining

    try:
        asyncio.run(main())
    finally:
        backend.released.set()
        predictor.close()
    assert backend.calls == [2, 1]
    calls = predictor.metrics.registry.get_sample_value(
        "driftgate_inference_calls_total",
        {"model": "slow", "version": "1", "placement": "event_loop"},
    )
    assert calls == 1


def test_on_one_thread_a_quick_merged_call_waits_for_one_explanation_call_not_all() -> None:
    # The explanation holds the only inference thread from its first call to its end; a
    # merged call that waited for its turn in a thread waited for all of it.
    predictor, backend, version = quick_batched(threads=1)
    finish = threading.Event()

    def explanation(stop: threading.Event) -> None:
        predictor_call(TWO_ROWS)  # one chunk, then the rest of the explanation
        assert finish.wait(10), "the test never finished the explanation"

    predictor_call = predictor.explanation_call(version)

    async def main() -> None:
        explaining = asyncio.ensure_future(predictor.explain(version, explanation))
        assert await asyncio.to_thread(backend.held.wait, 10)
        predicting = asyncio.ensure_future(predictor.infer(version, InferenceRequest(ONE_ROW)))
        await asyncio.sleep(0.1)
        assert not predicting.done()  # its turn: after the explanation's call in progress
        backend.released.set()
        response = await asyncio.wait_for(predicting, 5)  # the explanation is still running
        assert response.outputs["y"].tolist() == [[2.0]]
        assert not explaining.done()
        finish.set()
        await explaining

    try:
        asyncio.run(main())
    finally:
        backend.released.set()
        finish.set()
        predictor.close()
    assert backend.calls == [2, 1]


def test_a_lone_request_leaves_when_its_client_goes_while_it_waits_for_its_turn() -> None:
    predictor, backend, version = quick_batched(threads=2)

    async def main() -> None:
        call = predictor.explanation_call(version)
        explaining = asyncio.ensure_future(asyncio.to_thread(call, TWO_ROWS))
        assert await asyncio.to_thread(backend.held.wait, 10)
        gone = asyncio.Event()
        predicting = asyncio.ensure_future(
            predictor.infer(version, InferenceRequest(ONE_ROW), client_gone=gone.wait)
        )
        await asyncio.sleep(0.1)
        gone.set()  # the client hangs up while the explanation's call has the turn
        with pytest.raises(ClientClosedRequest):
            await asyncio.wait_for(predicting, 5)
        backend.released.set()
        await explaining
        await asyncio.to_thread(call, ONE_ROW)  # the turn it gave up is nobody's
        response = await asyncio.wait_for(predictor.infer(version, InferenceRequest(ONE_ROW)), 5)
        assert response.outputs["y"].tolist() == [[2.0]]

    try:
        asyncio.run(main())
    finally:
        backend.released.set()
        predictor.close()
    assert backend.calls == [2, 1, 1]  # the request that left never ran


def test_turns_are_taken_in_arrival_order() -> None:
    turns, order = CallTurns(), []
    turns.acquire()
    assert not turns.try_acquire()  # held: an inline caller does not wait for it

    def take(name: str) -> None:
        with turns:
            order.append(name)

    waiting = []
    for name in ("first", "second", "third"):
        thread = threading.Thread(target=take, args=(name,))
        thread.start()
        waiting.append(thread)
        time.sleep(0.05)  # each one waits before the next arrives
    turns.release()
    for thread in waiting:
        thread.join(5)
    assert order == ["first", "second", "third"]
    assert turns.try_acquire()  # free again
    turns.release()


def test_a_waiter_on_the_event_loop_that_leaves_gives_its_ticket_up() -> None:
    turns, order = CallTurns(), []

    def take(name: str) -> None:
        with turns:
            order.append(name)

    async def main() -> None:
        turns.acquire()  # an explanation's call in progress
        leaving = asyncio.ensure_future(turns.acquire_on_loop())
        await asyncio.sleep(0)
        behind = threading.Thread(target=take, args=("thread",))
        behind.start()
        await asyncio.sleep(0.05)
        leaving.cancel()  # its client went before its turn came
        await asyncio.sleep(0)
        turns.release()
        await asyncio.to_thread(behind.join, 5)
        assert order == ["thread"]  # served past the ticket given up

        turns.acquire()
        served_late = asyncio.ensure_future(turns.acquire_on_loop())
        await asyncio.sleep(0)
        turns.release()  # its turn comes...
        served_late.cancel()  # ...and it is cancelled before it runs: it passes the turn on
        with pytest.raises(asyncio.CancelledError):
            await served_late

    asyncio.run(main())
    assert turns.try_acquire()  # nobody holds the turn nor waits for it
    turns.release()


def test_a_request_cancelled_as_its_turn_comes_passes_the_turn_on() -> None:
    predictor, backend, version = quick_batched(threads=2)
    turns = predictor._turns_of(backend)

    async def main() -> None:
        assert turns.try_acquire()  # as an explanation's call would hold it
        predicting = asyncio.ensure_future(predictor.infer(version, InferenceRequest(ONE_ROW)))
        await asyncio.sleep(0.1)  # the request waits for its turn on the loop
        # In one step: the turn comes (its waker is scheduled, not yet run), and the
        # request is cancelled before it can run its call.
        turns.release()
        predicting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await predicting
        await asyncio.sleep(0.05)
        assert turns.try_acquire()  # nobody holds the turn nor waits for it
        turns.release()

    try:
        asyncio.run(main())
    finally:
        predictor.close()
    assert backend.calls == []
