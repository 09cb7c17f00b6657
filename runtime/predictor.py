"""Runs one validated request through a loaded model version, measured and traced.

This is the single place where dialect-neutral requests meet backends: every codec ends
here. Backends are synchronous. A call runs in a dedicated thread pool, so that the event
loop never waits on a slow model, unless calls of its size to the same version are known
to take at most ``inline_max_s``: those run inline, where a thread hand-off would cost
more than the model (``runtime.placement``). A model with ``batching:`` in its config.yaml
merges concurrent requests into one call first (``runtime.batching``). Calls waiting for a
thread are bounded per version; beyond the bound a request is refused with 503
(``runtime.waiting``). Explanations are admitted to the threads apart, fewer at once and
fewer waiting, so that they never crowd predictions out (``runtime.explain_slots``).
A request's call ends when its thread is done with it, cancelled or not, so its request
holds the model version (``ModelRepository.acquire``) as long as the backend is in use. A
version's unbatched calls are counted, so that a queue made when ``batching:`` is switched
on waits for them (``runtime.handover``). Merged calls and an explanation's model calls
take the version's turn (``runtime.call_turns``), so that an explanation never runs its
model beside a merged call: a version with ``batching:`` sees one call at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from monitoring.metrics import RuntimeMetrics, exemplar
from monitoring.tracing import current_trace_id
from runtime.backends.base import ModelBackend
from runtime.batching import Batched, Batcher
from runtime.call_turns import CallTurns
from runtime.errors import ClientClosedRequest, InferenceServerError, ModelNotReady
from runtime.explain_slots import (
    DEFAULT_MAX_WAITING_EXPLANATIONS,
    ExplainSlots,
    running_explanations_for,
)
from runtime.handover import AllDrained, CallsInFlight, Drains
from runtime.inference import InferenceRequest, InferenceResponse
from runtime.placement import EVENT_LOOP, CallPlacement
from runtime.repository import ModelVersion
from runtime.tensors import ModelMetadata
from runtime.validation import select_outputs, validate_inputs
from runtime.waiting import DEFAULT_MAX_WAITING_CALLS, ClientGone, WaitingCalls

log = logging.getLogger("driftgate.runtime.predictor")
T = TypeVar("T")
#: One backend call from an explanation's thread: inputs by name to outputs by name.
ModelCall = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]

#: Requests with up to this many input elements are validated on the event loop (about
#: 2 ms at the limit); bigger ones in a worker thread, like big bodies are decoded
#: (``runtime.routes.state.INLINE_DECODE_MAX_BYTES``).
INLINE_VALIDATE_MAX_ELEMENTS = 16_384


class Predictor:
    def __init__(
        self,
        metrics: RuntimeMetrics,
        tracer: trace.Tracer,
        threads: int,
        inline_max_s: float = 0.0,
        max_waiting_calls: int = DEFAULT_MAX_WAITING_CALLS,
        *,
        max_waiting_explanations: int = DEFAULT_MAX_WAITING_EXPLANATIONS,
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.placement = CallPlacement(inline_max_s)
        self.max_waiting_calls = max_waiting_calls
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")
        # Per backend object, like the placement: a reloaded version counts afresh.
        self._waiting: weakref.WeakKeyDictionary[object, WaitingCalls] = weakref.WeakKeyDictionary()
        self._unbatched: weakref.WeakKeyDictionary[object, CallsInFlight] = (
            weakref.WeakKeyDictionary()
        )
        # One call at a time of merged calls and explanations' calls, per backend object.
        self._turns: weakref.WeakKeyDictionary[object, CallTurns] = weakref.WeakKeyDictionary()
        # Queues of versions whose ``batching:`` was switched off: never taken up again.
        self._switched_off: weakref.WeakSet[Batcher] = weakref.WeakSet()
        self.explanations = ExplainSlots(
            running_explanations_for(threads), max_waiting_explanations
        )

    async def explain(
        self,
        model: ModelVersion,
        work: Callable[[threading.Event], T],
        client_gone: ClientGone | None = None,
    ) -> T:
        """Run an explanation, ``work(stop)``, in the inference threads once one of the
        explanation slots is free (``runtime.explain_slots``); ``stop`` is set when its
        client goes, and ``work`` stops at its next model call."""
        name, version = model.model, str(model.version)
        return await self.explanations.run(
            self._executor,
            work,
            version=model.backend if model.backend is not None else (name, version),
            label=f"model '{name}' version {version}",
            on_full=self.metrics.overload_rejections.labels(
                name, version, "waiting_explanations"
            ).inc,
            client_gone=client_gone,
        )

    def explanation_call(self, model: ModelVersion) -> ModelCall:
        """The backend call an explanation makes from its thread (``runtime.explaining``):
        each call waits for the version's turn (``runtime.call_turns``), at most one merged
        call or one other explanation's call. Built on the event loop.

        Taken whether or not the version batches now: ``batching:`` can be switched on
        between two of the explanation's calls, and the new queue's first call must still
        not run beside one. Two explanations of one version therefore take turns at the
        model too (their other work, building frames and solving, still overlaps)."""
        backend = model.backend
        if backend is None:
            raise ModelNotReady(f"model '{model.model}' version {model.version} is not loaded")
        turns = self._turns_of(backend)

        def call(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            with turns:
                return backend.predict(inputs)

        return call

    def _turns_of(self, backend: ModelBackend) -> CallTurns:
        """The backend's turns (created on the event loop only, so never twice)."""
        turns = self._turns.get(backend)
        if turns is None:
            turns = self._turns[backend] = CallTurns()
        return turns

    async def infer(
        self,
        model: ModelVersion,
        request: InferenceRequest,
        client_gone: ClientGone | None = None,
    ) -> InferenceResponse:
        """The model's answer. A request still queued (batching on) or waiting for a thread
        when ``client_gone`` returns leaves, never runs, and raises ``ClientClosedRequest``."""
        backend, metadata = model.backend, model.metadata
        if backend is None or metadata is None:
            raise ModelNotReady(f"model '{model.model}' version {model.version} is not loaded")
        inputs = await validate_off_loop_if_large(metadata, request.inputs)
        rows = _batch_rows(inputs)
        version = str(model.version)
        attributes: dict[str, str | int] = {
            "driftgate.model.name": model.model,
            "driftgate.model.version": version,
            "driftgate.model.format": model.format or "unknown",
            "driftgate.batch_size": rows,
        }
        batcher = self._batcher(model)
        with self.tracer.start_as_current_span(
            f"infer {model.model}", attributes=attributes
        ) as span:
            try:
                if batcher is None:
                    unbatched = self._unbatched.get(backend)
                    if unbatched is None:
                        unbatched = self._unbatched[backend] = CallsInFlight()
                    unbatched.started()
                    try:
                        outputs = await self._call(model, inputs, rows, client_gone)
                    finally:
                        unbatched.ended()
                else:
                    batched = await batcher.submit(inputs, rows, client_gone)
                    outputs = self._batched(model, span, batched)
            except InferenceServerError:
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR))
                log.exception("model %s version %s failed", model.model, version)
                raise InferenceServerError(
                    f"model '{model.model}' version {version} failed to run: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        selected = select_outputs(outputs, request.outputs, metadata)
        return InferenceResponse(
            model_name=model.model, model_version=version, outputs=selected, id=request.id
        )

    async def _call(
        self,
        model: ModelVersion,
        inputs: dict[str, np.ndarray],
        rows: int,
        client_gone: ClientGone | None = None,
        *,
        in_turn: bool = False,
    ) -> dict[str, np.ndarray]:
        """One backend call (one request's inputs, or a batch's), placed and measured; one
        request's call that waits for a thread leaves when ``client_gone`` returns.
        ``in_turn`` (a batch queue's calls): the call takes the version's turn; one placed
        inline that finds it taken (an explanation's call holds it) waits for it on the
        event loop, holding no thread, and leaves if ``client_gone`` returns meanwhile.

        Its span attributes go on the current span: the request's ``infer`` span, or for a
        batch the one of the request that started it.
        """
        backend = model.backend
        if backend is None:
            raise ModelNotReady(f"model '{model.model}' version {model.version} is not loaded")
        version = str(model.version)
        placement = self.placement.choose(backend, rows)
        turns = self._turns_of(backend) if in_turn else None
        span = trace.get_current_span()
        span.set_attributes(
            {"driftgate.inference.placement": placement, "driftgate.batch_size": rows}
        )
        if placement == EVENT_LOOP:
            if turns is not None and not turns.try_acquire():
                # An explanation's call has the turn: wait for it here, holding no thread.
                await _turn_unless_gone(turns, client_gone, model)
            try:
                outputs, elapsed = _timed_predict(backend, inputs)
            finally:
                if turns is not None:
                    turns.release()
        else:
            outputs, elapsed = await self._waiting_calls(model, backend).run(
                self._executor,
                functools.partial(_timed_predict, backend, inputs, turns),
                client_gone,
            )
        self.placement.observe(backend, rows, elapsed)
        self.metrics.inference_calls.labels(model.model, version, placement).inc()
        self.metrics.inference_duration.labels(model.model, version).observe(
            elapsed, exemplar(current_trace_id() or span.get_span_context().trace_id)
        )
        self.metrics.batch_size.labels(model.model, version).observe(rows)
        self._count_nonfinite(model.model, version, outputs)
        return outputs

    def _count_nonfinite(self, model: str, version: str, outputs: Mapping[str, np.ndarray]) -> None:
        """NaN and infinities in floating outputs: answered as JSON null with a 200, a model
        that starts producing them is otherwise seen only by the clients that get them."""
        for name, array in outputs.items():
            if isinstance(array, np.ndarray) and array.dtype.kind in "fc" and array.size:
                nonfinite = array.size - int(np.count_nonzero(np.isfinite(array)))
                if nonfinite:
                    self.metrics.nonfinite_outputs.labels(model, version, name).inc(nonfinite)

    def _waiting_calls(self, model: ModelVersion, backend: ModelBackend) -> WaitingCalls:
        """The bound on this version's calls waiting for a thread (``runtime.waiting``)."""
        calls = self._waiting.get(backend)
        if calls is None:
            name, version = model.model, str(model.version)
            rejected = self.metrics.overload_rejections.labels(name, version, "waiting_calls")
            calls = WaitingCalls(
                self.max_waiting_calls, f"model '{name}' version {version}", rejected.inc
            )
            self._waiting[backend] = calls
        return calls

    def _batcher(self, model: ModelVersion) -> Batcher | None:
        """The version's queue while its config asks for batching: a new one on a change,
        which runs nothing until the queue it replaces and the version's unbatched calls
        have drained (one call at a time). Batching switched off and back on, even
        unchanged, is a change: the old queue knows nothing of the calls made meanwhile."""
        config = model.batching
        if config is None:
            if model.batcher is not None:
                self._switched_off.add(model.batcher)
            return None
        if (
            model.batcher is None
            or model.batcher.config != config
            or model.batcher in self._switched_off
        ):
            after: Drains | None = model.batcher
            unbatched = self._unbatched.get(model.backend) if model.backend is not None else None
            if unbatched is not None:
                after = unbatched if after is None else AllDrained(after, unbatched)
            name, version = model.model, str(model.version)
            depth = self.metrics.queue_depth.labels(name, version)
            splits = self.metrics.batch_splits
            model.batcher = Batcher(
                config,
                lambda inputs, rows: self._call(model, inputs, rows, in_turn=True),
                on_depth=depth.set,
                on_split=lambda reason: splits.labels(name, version, reason).inc(),
                on_full=self.metrics.batch_rejections.labels(name, version).inc,
                label=f"model '{name}' version {version}",
                after=after,
                run_alone=lambda inputs, rows, gone: self._call(
                    model, inputs, rows, gone, in_turn=True
                ),
            )
        return model.batcher

    def _batched(
        self, model: ModelVersion, span: trace.Span, batched: Batched
    ) -> dict[str, np.ndarray]:
        """This request's outputs from the call that answered it, said on its span, with a
        ``batch wait`` child span for its time in the queue."""
        span.set_attributes(
            {"driftgate.batch.requests": batched.requests, "driftgate.batch_size": batched.rows}
        )
        wait = self.tracer.start_span(
            f"batch wait {model.model}",
            attributes={"driftgate.batch.requests": batched.requests},
            start_time=batched.joined_ns,
        )
        wait.end(end_time=batched.started_ns)
        return batched.outputs

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _timed_predict(
    backend: ModelBackend, inputs: dict[str, np.ndarray], turns: CallTurns | None = None
) -> tuple[dict[str, np.ndarray], float]:
    """The backend's outputs and the seconds spent inside it (no queueing counted, nor
    the wait for ``turns``, taken here when given)."""
    with turns if turns is not None else contextlib.nullcontext():
        started = time.perf_counter()
        outputs = backend.predict(inputs)
        return outputs, time.perf_counter() - started


async def _turn_unless_gone(
    turns: CallTurns, client_gone: ClientGone | None, model: ModelVersion
) -> None:
    """The version's turn, waited for on the event loop; ``ClientClosedRequest`` (no turn
    held) when ``client_gone`` returns first."""
    waiting = asyncio.ensure_future(turns.acquire_on_loop())
    watcher = asyncio.ensure_future(client_gone()) if client_gone is not None else None
    try:
        await asyncio.wait(
            (waiting,) if watcher is None else (waiting, watcher),
            return_when=asyncio.FIRST_COMPLETED,
        )
    except BaseException:
        if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
            turns.release()  # the turn came in the very step this task was cancelled
        else:
            waiting.cancel()  # gives the ticket up, or passes on a turn that came meanwhile
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
    if waiting.done():
        waiting.result()
        return
    waiting.cancel()
    raise ClientClosedRequest(
        "the client closed the connection while its request waited for its turn at "
        f"model '{model.model}' version {model.version}"
    )


def _batch_rows(inputs: dict[str, np.ndarray]) -> int:
    for array in inputs.values():
        return int(array.shape[0]) if array.ndim else 1
    return 0


async def validate_off_loop_if_large(
    metadata: ModelMetadata, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``validate_inputs``, on the event loop for a small request, else in a thread."""
    if sum(array.size for array in inputs.values()) <= INLINE_VALIDATE_MAX_ELEMENTS:
        return validate_inputs(metadata, inputs)
    return await asyncio.to_thread(validate_inputs, metadata, inputs)
