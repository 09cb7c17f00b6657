"""Shadow traffic: mirror a request to other targets after the client has its answer.

A shadow runs as a background task with its own budget; its latency, errors and body
never reach the client. Its span starts a new trace linked to the request's span, so a
slow shadow never stretches the request's trace. When the route says how, the shadow's
output is compared with the primary's (same class, or numbers within a tolerance) and
counted in ``driftgate_shadow_comparisons_total`` (hence
``driftgate_shadow_agreement_ratio``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from gateway.dispatcher import Dispatcher, ProxyRequest
from gateway.planner import ShadowPlan
from gateway.policy import Compare
from gateway.upstream import UpstreamResponse, UpstreamUnavailable

log = logging.getLogger("driftgate.gateway.shadow")
ShadowObserver = Callable[[ShadowPlan, ProxyRequest, UpstreamResponse, str, float], None]


class ShadowRunner:
    def __init__(self, dispatcher: Dispatcher, tracer: trace.Tracer) -> None:
        self.dispatcher = dispatcher
        self.tracer = tracer
        self._tasks: set[asyncio.Task[None]] = set()
        #: Called with every shadow answer (the prediction log records it, role "shadow").
        self.on_answer: ShadowObserver | None = None

    def schedule(
        self,
        shadows: Iterable[ShadowPlan],
        request: ProxyRequest,
        primary: UpstreamResponse,
        timeout_s: float,
    ) -> None:
        link = Link(trace.get_current_span().get_span_context())
        for shadow in shadows:
            task = asyncio.create_task(self._mirror(shadow, request, primary, timeout_s, link))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for shadows in flight, e.g. at shutdown."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout_s)

    async def _mirror(
        self,
        shadow: ShadowPlan,
        request: ProxyRequest,
        primary: UpstreamResponse,
        timeout_s: float,
        link: Link,
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
                return
            except Exception:  # a shadow must never hurt anything
                log.exception("shadow call to %s failed", target)
                metrics.shadow_requests.labels(*labels, "error").inc()
                return
            if self.on_answer is not None:
                self.on_answer(shadow, request, response, replica, started)
            ok = response.status < 400
            metrics.shadow_requests.labels(*labels, "ok" if ok else "error").inc()
            if ok and shadow.compare is not None and primary.status < 400:
                agrees = compare_outputs(shadow.compare, primary.body, response.body)
                if agrees is not None:
                    metrics.shadow_comparisons.labels(
                        *labels, "agree" if agrees else "disagree"
                    ).inc()


def compare_outputs(rule: Compare, primary_body: bytes, shadow_body: bytes) -> bool | None:
    """Whether the two answers agree on ``rule.output``; None when it cannot be read."""
    primary = output_values(primary_body, rule.output)
    shadow = output_values(shadow_body, rule.output)
    if primary is None or shadow is None or len(primary) != len(shadow):
        return None
    if rule.kind == "class":
        return primary == shadow
    try:
        return all(
            math.isclose(float(a), float(b), abs_tol=rule.tolerance, rel_tol=0)
            for a, b in zip(primary, shadow, strict=True)
        )
    except (TypeError, ValueError):
        return None


def output_values(body: bytes, name: str) -> list[Any] | None:
    """The flattened values of output ``name`` in any of the three dialects' JSON answers."""
    try:
        answer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None  # e.g. a binary Open Inference Protocol answer
    if not isinstance(answer, dict):
        return None
    outputs = answer.get("outputs")
    if isinstance(outputs, list):  # Open Inference Protocol
        for output in outputs:
            if isinstance(output, dict) and output.get("name") == name:
                return _flatten(output.get("data"))
        return None
    if isinstance(outputs, dict) and name in outputs:  # eval, TF-Serving columns
        return _flatten(outputs[name])
    predictions = answer.get("predictions")
    if isinstance(predictions, list):  # TF-Serving rows
        rows = [row.get(name) if isinstance(row, dict) else row for row in predictions]
        return _flatten(rows)
    return None


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [item for element in value for item in _flatten(element)]
    return [value]
