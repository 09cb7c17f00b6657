"""Shadow traffic: mirror a request to other targets after the client has its answer.

A shadow runs as a background task with its own budget; its latency, errors and body
never reach the client. Its span starts a new trace linked to the request's span, so a
slow shadow never stretches the request's trace. When the route says how, the shadow's
output is compared with the primary's (same class, or numbers within a tolerance) and
counted in ``driftgate_shadow_comparisons_total`` (hence
``driftgate_shadow_agreement_ratio``). When a fallback answered, the shadow is still sent
but not compared: agreement measures the shadow against the primary, and a fallback (often
another kind of model) is not the primary. A target already tried for the request (a
fallback that answered or failed) is not mirrored to: it would get the same request twice.
Nor is a target whose circuit breaker on the route is open: it is known to be failing, and
more load can only slow its recovery. Such a shadow is counted
(``driftgate_shadow_requests_total{outcome="circuit_open"}``).

Shadows have circuit breakers of their own, one per target on the route, with the route's
``circuit_breaker`` settings: a 5xx, a timeout or a connection error is a failure, any other
answer a success (whether it agrees with the primary is not the target's health). So a
target that fails every shadow stops receiving them after ``failures`` in a row, for
``open_s``; then one shadow probes it. They are not the breakers of the route's requests
(``gateway.dispatcher``): what a shadow meets (one try, the route's whole ``timeout_s``)
must neither open nor close a circuit that clients depend on, or a shadow would reach the
client after all. A route with ``circuit_breaker: null`` has neither kind. A shadow that
found no replica, or failed on our side, says nothing about its target.

At most ``MAX_IN_FLIGHT`` shadow calls run at once per gateway; a shadow beyond that is
dropped and counted (``driftgate_shadow_requests_total{outcome="dropped"}``). Shadows share
the replicas' connection pools with the answers clients wait for, and each one holds its
request's body: a slow or hanging shadow target must take neither memory nor connections
from them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

import msgspec
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from gateway.circuit import CircuitBreaker, forget_breakers
from gateway.dispatcher import Dispatcher, ProxyRequest, ProxyResult
from gateway.planner import ShadowPlan
from gateway.policy import Compare, RoutePolicy, Target
from gateway.upstream import MAX_CONNECTIONS, UpstreamResponse, UpstreamUnavailable
from monitoring.binary_tensors import HEADER_LENGTH, BinaryDataError, decode_chunk, split_body

log = logging.getLogger("driftgate.gateway.shadow")
ShadowObserver = Callable[[ShadowPlan, ProxyRequest, UpstreamResponse, str, float], None]

#: Shadow calls in flight per gateway, at most: half of the upstream connection pool, so
#: that shadows never hold all of it. Without the bound, a shadow target that hung took every
#: connection and clients waited for its timeout (p99 from 0.4 s to 18.7 s, 16 clients).
MAX_IN_FLIGHT = MAX_CONNECTIONS // 2


class ShadowRunner:
    def __init__(
        self, dispatcher: Dispatcher, tracer: trace.Tracer, max_in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        self.dispatcher = dispatcher
        self.tracer = tracer
        self.max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        #: Called with every shadow answer (the prediction log records it, role "shadow").
        self.on_answer: ShadowObserver | None = None
        #: The shadows' own circuit breakers, per (route, target).
        self._breakers: dict[tuple[str, Target], CircuitBreaker] = {}

    def schedule(
        self,
        shadows: Iterable[ShadowPlan],
        request: ProxyRequest,
        answered: ProxyResult,
        policy: RoutePolicy,
    ) -> bool:
        """Mirror ``request`` to ``shadows`` in the background; returns whether any shadow
        was sent (the prediction log keeps such a request, to pair it with its shadows).

        Shadows whose target ``answered`` already tried are not sent; shadows of a target
        whose circuit breaker is open, or beyond ``max_in_flight``, are not sent and are
        counted (``circuit_open``, ``dropped``). Only the primary's answer is compared.
        """
        compare_with = answered.response if answered.role == "primary" else None
        link = Link(trace.get_current_span().get_span_context())
        sent = False
        for shadow in shadows:
            target = shadow.target
            if target in answered.tried:
                continue
            if self.dispatcher.circuit_open(request.route, target):
                self._not_sent(request, target, "circuit_open")
                continue
            if len(self._tasks) >= self.max_in_flight:
                self._not_sent(request, target, "dropped")
                continue
            breaker = self.dispatcher.route_breaker(self._breakers, request.route, policy, target)
            if breaker is not None and not breaker.allow(self.dispatcher.clock()):
                self._not_sent(request, target, "circuit_open")
                continue
            task = asyncio.create_task(
                self._mirror(shadow, request, compare_with, policy.timeout_s, link, breaker=breaker)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            sent = True
        return sent

    def forget_breakers(
        self,
        routes: Collection[str],
        settings_of: Callable[[str, Target], tuple[int, float] | None],
    ) -> None:
        """See ``gateway.circuit.forget_breakers``: after ``routes`` changed."""
        forget_breakers(self._breakers, routes, settings_of)

    def breaker_states(self, now: float) -> list[tuple[str, Target, str]]:
        return [
            (route, target, breaker.state_at(now).value)
            for (route, target), breaker in self._breakers.items()
        ]

    def _not_sent(self, request: ProxyRequest, target: Target, outcome: str) -> None:
        labels = (request.route, target.model, target.version or "", outcome)
        self.dispatcher.metrics.shadow_requests.labels(*labels).inc()

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for shadows in flight, e.g. at shutdown."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout_s)

    async def _mirror(
        self,
        shadow: ShadowPlan,
        request: ProxyRequest,
        primary: UpstreamResponse | None,
        timeout_s: float,
        link: Link,
        *,
        breaker: CircuitBreaker | None,
    ) -> None:
        target, metrics = shadow.target, self.dispatcher.metrics
        labels = (request.route, target.model, target.version or "")
        with self.tracer.start_as_current_span(
            f"shadow {target.model}",
            kind=SpanKind.INTERNAL,
            links=[link],
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            attributes={"driftgate.route": request.route, "driftgate.role": "shadow"},
        ):
            started = time.perf_counter()
            replica = self.dispatcher.replicas.pick(set(), self.dispatcher.clock())
            if replica is None:
                metrics.shadow_requests.labels(*labels, "error").inc()
                return
            try:
                response = await self.dispatcher.call(
                    replica, request, target, timeout_s=timeout_s, role="shadow"
                )
            except UpstreamUnavailable as exc:
                metrics.shadow_requests.labels(
                    *labels, "timeout" if exc.kind == "timeout" else "error"
                ).inc()
                if breaker is not None:
                    breaker.record_failure(self.dispatcher.clock())
                return
            except Exception:  # a shadow must never hurt anything
                log.exception("shadow call to %s failed", target)
                metrics.shadow_requests.labels(*labels, "error").inc()
                return
            if self.on_answer is not None:
                self.on_answer(shadow, request, response, replica, started)
            if breaker is not None:  # as the dispatcher counts: only a 5xx is the target's fault
                if response.status >= 500:
                    breaker.record_failure(self.dispatcher.clock())
                else:
                    breaker.record_success(self.dispatcher.clock())
            ok = response.status < 400
            metrics.shadow_requests.labels(*labels, "ok" if ok else "error").inc()
            if ok and shadow.compare is not None and primary is not None and primary.status < 400:
                try:
                    agrees = compare_outputs(shadow.compare, primary, response)
                except Exception:  # an answer no reading foresaw: still never hurts anything
                    log.exception("comparing the answer of shadow %s failed", target)
                    agrees = None
                if agrees is not None:
                    metrics.shadow_comparisons.labels(
                        *labels, "agree" if agrees else "disagree"
                    ).inc()


def compare_outputs(
    rule: Compare, primary_answer: UpstreamResponse, shadow_answer: UpstreamResponse
) -> bool | None:
    """Whether the two answers agree on ``rule.output``; None when they cannot be compared
    (the output is missing from either, the numbers of values differ, there are none, or
    ``numeric`` meets values that are not numbers).

    NaN and infinities reach us as ``null`` (JSON has no other way; in binary tensor data
    they are read as ``null`` too): ``null`` agrees with ``null`` only. ``class`` takes a
    number and its text as the same class (``1``, ``1.0``, ``"1"``): two models of one task
    may type their labels differently.
    """
    primary = output_values(primary_answer.body, rule.output, _header_length(primary_answer))
    shadow = output_values(shadow_answer.body, rule.output, _header_length(shadow_answer))
    if not primary or not shadow or len(primary) != len(shadow):
        return None
    if rule.kind == "class":
        return all(_same_class(a, b) for a, b in zip(primary, shadow, strict=True))
    agrees = True
    for a, b in zip(primary, shadow, strict=True):
        if a is None or b is None:
            agrees = agrees and a is b
            continue
        try:
            close = math.isclose(float(a), float(b), abs_tol=rule.tolerance, rel_tol=0)
        except (TypeError, ValueError, OverflowError):
            return None
        agrees = agrees and close
    return agrees


def _same_class(a: Any, b: Any) -> bool:
    if a == b:
        return True
    text = _class_text(a)
    return text is not None and text == _class_text(b)


def _class_text(value: Any) -> str | None:
    """A scalar class label as text: ``1``, ``1.0`` and ``"1"`` are ``"1"``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _header_length(answer: UpstreamResponse) -> str | None:
    return answer.headers.get(HEADER_LENGTH.lower())  # Http1Upstream's names are lowercase


def output_values(body: bytes, name: str, header_length: str | None = None) -> list[Any] | None:
    """The flattened values of output ``name`` in any of the three dialects' answers; an
    Open Inference Protocol answer with binary tensor data (``header_length``, its
    ``Inference-Header-Content-Length``) is read as the recorder reads it.

    TF-Serving answers a one-output model without naming the output (``{"outputs": <value>}``,
    ``{"predictions": [<value>, ...]}``): those values are taken whatever ``name`` says.
    """
    try:
        head, binary = split_body(body, header_length)
        answer = msgspec.json.decode(head)
    except (BinaryDataError, msgspec.DecodeError, RecursionError):  # msgspec recurses
        return None
    if not isinstance(answer, dict):
        return None
    if "outputs" in answer:
        return _output_of(answer["outputs"], name, binary)
    predictions = answer.get("predictions")
    if isinstance(predictions, list):  # TF-Serving rows
        rows = []
        for row in predictions:
            if not isinstance(row, dict) or _is_binary(row):
                rows.append(row)  # a one-output model's bare value
            elif name in row:
                rows.append(row[name])
            else:
                return None
        return _flatten(rows)
    return None


def _output_of(outputs: Any, name: str, binary: bytes) -> list[Any] | None:
    if isinstance(outputs, list) and any(_is_named_tensor(output) for output in outputs):
        chunks = _chunks([output for output in outputs if _is_named_tensor(output)], binary)
        if chunks is None:
            return None
        for output, chunk in chunks:  # Open Inference Protocol
            if output["name"] == name:
                if chunk is not None:
                    return _read(output, chunk)
                return _flatten(output["data"]) if "data" in output else None
        return None
    if isinstance(outputs, dict) and not _is_binary(outputs):  # eval, TF-Serving columns
        return _flatten(outputs[name]) if name in outputs else None
    return _flatten(outputs)  # TF-Serving columns of a one-output model


def _is_named_tensor(output: Any) -> bool:
    return isinstance(output, dict) and isinstance(output.get("name"), str)


def _is_binary(value: dict[str, Any]) -> bool:
    """TF-Serving's ``{"b64": "..."}``: one value, not outputs by name."""
    return value.keys() == {"b64"}


def _chunks(
    outputs: list[dict[str, Any]], binary: bytes
) -> list[tuple[dict[str, Any], bytes | None]] | None:
    """Each output with its binary data (None: its values are JSON ``data``), or None when
    the sizes do not add up to the binary data exactly, as the recorder checks them: a cut
    answer, or a size that is not a non-negative integer, would shift every later output."""
    chunks: list[tuple[dict[str, Any], bytes | None]] = []
    offset = 0
    for output in outputs:
        parameters = output.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            chunks.append((output, None))
            continue
        if "data" in output or type(size) is not int or not 0 <= size <= len(binary) - offset:
            return None
        chunks.append((output, binary[offset : offset + size]))
        offset += size
    return chunks if offset == len(binary) else None


def _read(output: dict[str, Any], chunk: bytes) -> list[Any] | None:
    """A binary output's values, flat, as JSON would carry them (text, null for NaN)."""
    shape = output.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        return None
    datatype = output.get("datatype")
    if not isinstance(datatype, str) or not 0 < _count_within(shape, len(chunk)) <= len(chunk):
        return None  # no values, or more than its bytes can hold (each takes one or more)
    try:
        array = decode_chunk(chunk, datatype, shape)
    except (BinaryDataError, ValueError):  # ValueError: numpy's rank limit, say
        return None
    values = array.ravel().tolist()
    if array.dtype == object:  # BYTES
        return [value.decode("utf-8", "replace") for value in values]
    if array.dtype.kind == "f":
        return [value if math.isfinite(value) else None for value in values]
    return values


def _count_within(shape: list[int], limit: int) -> int:
    """The number of elements of ``shape``, or ``limit + 1`` as soon as it is past ``limit``:
    the product of thousands of dimensions of 2**62 is a huge integer, slow to make and too
    long to print in an error message."""
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count > limit:
            return limit + 1
    return count


def _flatten(value: Any) -> list[Any]:
    """Nested lists as one list of values, in order (iterative: any depth is safe)."""
    flat: list[Any] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        else:
            flat.append(item)
    return flat
