"""Dynamic batching: concurrent requests to one model version merged into one backend call.

Configured per model by ``batching:`` in its ``config.yaml`` (off when absent; the keys and
their checks: ``runtime.batching_config``). Per loaded version, on the runtime's event loop:

- While a call runs, arrivals queue and go together as soon as it finishes: batches grow
  with the load. With ``max_queue_delay_ms: 0`` (the default) an idle model runs a request
  at once, in the request's own task, so batching costs a lone request next to nothing
  (bench/batching.py). A positive delay makes the first request to an idle model wait that
  long for company (or until ``max_batch_size`` rows are queued): bigger batches at low
  load, for that much latency (plus the event loop's timer resolution, about 1 ms).
- A batch takes queued requests in arrival order while their rows fit ``max_batch_size``
  and their inputs stack (same names, dtypes and shapes past dimension 0:
  ``runtime.batch_merge``); the others wait for the next batch. A request of more rows
  than ``max_batch_size`` runs alone.
- The stacked inputs run once (``run``: the predictor's backend call, placed and measured
  like any other) and each request gets its own rows of every output.
- One bad request must not fail its neighbours: when the merged call fails, or an output
  does not have one row per input row, each request of the batch runs alone, and only
  those that fail alone fail (``driftgate_batch_splits_total`` counts these batches).
- A request whose client went away is dropped from the queue at once (``client_gone``: the
  server says the connection closed), or skipped if its task is cancelled; it never runs.
  So does the lone request an idle queue runs at once while its call waits for an
  inference thread (``runtime.waiting``), or for its turn (``runtime.call_turns``).
  One whose batch is already running ends when that batch does (answered
  ``ClientClosedRequest``, or cancelled): until then its request holds the model version,
  whose backend is never unloaded under a call (``runtime.repository``).
- The queue is bounded: a request finding ``max_queue_size`` requests waiting is refused
  at once with ``ServiceOverloaded`` (503, ``Retry-After: 1``; ``on_full`` counts it), so
  that an overloaded model sheds load to other replicas instead of growing its latency and
  memory without limit.

At most one merged call per version runs at a time; a model that uses several cores does so
inside that call (TensorFlow's intra-op threads, ONNX Runtime's). An explanation's calls of
the version, made from its own thread, take turns with the merged calls
(``runtime.call_turns``). That holds across a change
of ``batching:`` too: the version's new queue (``after``: the queue it replaces, the
version's unbatched calls, or both; ``runtime.handover``) runs no call until those have
ended; arrivals meanwhile queue in the new one, bounded by its ``max_queue_size``. A
cancelled request's call ends only once its thread is done (``runtime.waiting``), so the
queue is not idle before that either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from runtime.batch_merge import Arrays, StackKey, split_outputs, stack_inputs, stack_key
from runtime.batching_config import BatchingConfig
from runtime.errors import ClientClosedRequest, ServiceOverloaded
from runtime.handover import Drains
from runtime.waiting import ClientGone

log = logging.getLogger("driftgate.runtime.batching")

#: Runs one backend call on stacked inputs; raises what the backend raised.
RunBatch = Callable[[Arrays, int], Awaitable[Arrays]]
#: Runs one request's call alone; raises ``ClientClosedRequest`` when ``ClientGone``
#: returns before the call started (``runtime.waiting``).
RunAlone = Callable[[Arrays, int, ClientGone | None], Awaitable[Arrays]]


@dataclass(frozen=True)
class Batched:
    """One request's share of the call that answered it."""

    outputs: Arrays
    requests: int  # requests in that call (1: it ran alone)
    rows: int  # rows in that call
    joined_ns: int  # when the request joined the queue (time.time_ns, as spans want)
    started_ns: int  # when the call that answered it started


@dataclass(eq=False)  # one request is itself only: never compare its arrays
class _Queued:
    inputs: Arrays
    rows: int
    stack_key: StackKey
    answer: asyncio.Future[Batched]
    joined_ns: int
    #: Set once no call of this request's batch runs any more (or it never was taken).
    done_with: asyncio.Future[None]


class Batcher:
    """The queue of one loaded model version (see the module docstring)."""

    def __init__(
        self,
        config: BatchingConfig,
        run: RunBatch,
        *,
        on_depth: Callable[[int], None] = lambda _: None,
        on_split: Callable[[str], None] = lambda _: None,
        on_full: Callable[[], None] = lambda: None,
        label: str = "the model",
        after: Drains | None = None,
        run_alone: RunAlone | None = None,
    ) -> None:
        self.config = config
        self._after = after  # the calls this queue replaces, until they have drained
        self._run = run
        # An idle queue's lone request: its call may leave when its client goes.
        self._run_alone = run_alone or (lambda inputs, rows, _: run(inputs, rows))
        self._on_depth = on_depth  # requests waiting, after every change
        self._on_split = on_split  # a batch ran request by request: why
        self._on_full = on_full  # a request was refused: the queue was full
        self._label = label  # "model 'm' version 1", for messages
        self._queue: deque[_Queued] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # a call runs: arrivals queue for the next one
        self._worker: asyncio.Task[None] | None = None  # the task draining the queue
        self._idle_waiters: list[asyncio.Future[None]] = []  # ``until_idle`` callers

    async def until_idle(self) -> None:
        """Returns once no call of this queue (or of the queues it replaced) runs or waits."""
        while True:
            if self._busy or self._queue:
                waiter = asyncio.get_running_loop().create_future()
                self._idle_waiters.append(waiter)
                await waiter
            elif self._after is not None:
                await self._after.until_idle()
                self._after = None
            else:
                return

    def _maybe_idle(self) -> None:
        if not self._busy and not self._queue:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def busy(self) -> bool:
        """Whether a call of this queue (or of what it replaced) may still run or wait."""
        return self._busy or bool(self._queue) or self._replaced_one_busy()

    def _replaced_one_busy(self) -> bool:
        """Whether the calls this queue replaced may still run."""
        if self._after is not None and not self._after.busy():
            self._after = None
        return self._after is not None

    async def submit(
        self, inputs: Arrays, rows: int, client_gone: ClientGone | None = None
    ) -> Batched:
        """This request's outputs, from a merged call or its own; raises what its call raised.

        ``ServiceOverloaded`` when the queue is full; ``ClientClosedRequest`` when
        ``client_gone`` returns before the answer is ready (the request is dropped)."""
        idle = not self._busy and not self._queue and not self._replaced_one_busy()
        if idle and self.config.max_queue_delay_s == 0:
            return await self._run_idle(inputs, rows, client_gone)
        if len(self._queue) >= self.config.max_queue_size:
            self._on_full()
            raise ServiceOverloaded(
                f"{self._label} is overloaded: {len(self._queue)} requests already wait in its "
                "batch queue (batching.max_queue_size); retry shortly"
            )
        loop = asyncio.get_running_loop()
        queued = _Queued(
            inputs,
            rows,
            stack_key(inputs),
            loop.create_future(),
            time.time_ns(),
            loop.create_future(),
        )
        self._queue.append(queued)
        self._on_depth(len(self._queue))
        if not self._busy:
            full = sum(q.rows for q in self._queue) >= self.config.max_batch_size
            if full or self.config.max_queue_delay_s == 0:
                self._start()
            elif self._timer is None:
                self._timer = loop.call_later(self.config.max_queue_delay_s, self._start)
        try:
            if client_gone is None:
                return await queued.answer
            return await self._answer_or_drop(queued, client_gone)
        except asyncio.CancelledError:
            queued.answer.cancel()  # skipped if still queued
            if queued not in self._queue:  # taken: its request holds the model until the end
                await _until_done(queued.done_with)
            raise

    async def _answer_or_drop(self, queued: _Queued, client_gone: ClientGone) -> Batched:
        """The request's answer, unless its client goes first: then it leaves the queue."""
        watcher = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait((queued.answer, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if queued.answer.done():
            return queued.answer.result()
        queued.answer.cancel()  # skipped if its batch is already running
        if queued in self._queue:
            self._queue.remove(queued)
            self._on_depth(len(self._queue))
            self._maybe_idle()
        else:  # its batch runs: the request holds the model version until that call ends
            await _until_done(queued.done_with)
        raise ClientClosedRequest(
            f"the client closed the connection while its request waited for {self._label}"
        )

    async def _run_idle(self, inputs: Arrays, rows: int, client_gone: ClientGone | None) -> Batched:
        """An idle model with no delay to wait: the call runs at once, in the request's own
        task (no queue, no hand-off); whoever arrives meanwhile goes in the next call. Its
        client going while the call waits for a thread: ``ClientClosedRequest``, no call."""
        self._busy = True
        started = time.time_ns()
        try:
            outputs = await self._run_alone(inputs, rows, client_gone)
        finally:
            self._busy = False
            if self._queue:
                self._start()
            self._maybe_idle()
        return Batched(outputs, 1, rows, started, started)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._busy:
            self._busy = True
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Run batches until the queue is empty (arrivals during a call go next)."""
        batch: list[_Queued] = []
        try:
            if self._after is not None:  # the calls this queue replaces must end first
                await self._after.until_idle()
                self._after = None
            while batch := self._take():
                try:
                    await self._answer(batch)
                finally:
                    _done_with(batch)
        finally:
            self._busy, self._worker = False, None
            for queued in [*batch, *self._queue]:  # left only if this task was cancelled
                if not queued.answer.done():
                    queued.answer.cancel()
            _done_with([*batch, *self._queue])
            self._queue.clear()
            self._maybe_idle()

    def _take(self) -> list[_Queued]:
        """The next batch: the oldest live request and those that stack with it and fit."""
        waiting = [q for q in self._queue if not q.answer.done()]  # drop the cancelled
        self._queue.clear()
        if not waiting:
            self._on_depth(0)
            return []
        first, batch, rows = waiting[0], [waiting[0]], waiting[0].rows
        for queued in waiting[1:]:
            fits = rows + queued.rows <= self.config.max_batch_size
            if fits and first.stack_key is not None and queued.stack_key == first.stack_key:
                batch.append(queued)
                rows += queued.rows
            else:
                self._queue.append(queued)
        self._on_depth(len(self._queue))
        return batch

    async def _answer(self, batch: list[_Queued]) -> None:
        started = time.time_ns()
        if len(batch) == 1:
            await self._alone(batch[0], started)
            return
        rows = [q.rows for q in batch]
        total = sum(rows)
        stacked = stack_inputs([q.inputs for q in batch])
        try:
            outputs = await self._run(stacked, total)
        except Exception as exc:
            log.info("a batch of %d requests failed (%s): running them one by one", len(batch), exc)
            self._on_split("call_failed")
        else:
            shares = split_outputs(outputs, rows)
            if shares is not None:
                for queued, share in zip(batch, shares, strict=True):
                    _settle(queued, Batched(share, len(batch), total, queued.joined_ns, started))
                return
            self._on_split("outputs_not_batched")
        for queued in batch:
            await self._alone(queued, started)

    async def _alone(self, queued: _Queued, started: int) -> None:
        if queued.answer.done():  # cancelled while its batch ran
            return
        try:
            outputs = await self._run(queued.inputs, queued.rows)
        except Exception as exc:
            if not queued.answer.done():
                queued.answer.set_exception(exc)
            return
        _settle(queued, Batched(outputs, 1, queued.rows, queued.joined_ns, started))


def _settle(queued: _Queued, result: Batched) -> None:
    if not queued.answer.done():
        queued.answer.set_result(result)


def _done_with(batch: list[_Queued]) -> None:
    for queued in batch:
        if not queued.done_with.done():
            queued.done_with.set_result(None)


async def _until_done(done_with: asyncio.Future[None]) -> None:
    """Returns once ``done_with`` is set, even if the waiting task is cancelled meanwhile
    (its caller raises that then): a request's call is never left running behind it."""
    while not done_with.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(done_with)
