"""What every route handler shares: the app-wide runtime state and per-request measuring."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from litestar import Request
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from monitoring.body_encoding import (
    CorruptBody,
    InflatesPastLimit,
    UnsupportedEncoding,
    decode_body,
)
from monitoring.metrics import RuntimeMetrics, exemplar
from monitoring.tracing import current_trace_id
from runtime.errors import (
    BadRequest,
    ClientClosedRequest,
    InferenceServerError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from runtime.predictor import Predictor
from runtime.repository import ModelRepository, ModelVersion
from runtime.settings import RuntimeSettings

#: Handlers never look at Litestar's user/auth/state type parameters.
AnyRequest = Request[Any, Any, Any]
T = TypeVar("T")

#: Bodies up to this size are decoded on the event loop (a titanic row is 70 bytes and
#: decodes in microseconds; 16 KiB in about 3 ms). Bigger ones are decoded in a worker
#: thread, so that a 16 MB body (seconds of decoding) does not hold up health checks and
#: every other request: the loop gets the interpreter back every switch interval (5 ms).
INLINE_DECODE_MAX_BYTES = 16 * 1024
#: A compressed body up to this size is inflated on the event loop: it inflates to at most
#: about a megabyte (deflate expands some 1,000 times at most), a millisecond or so.
INLINE_INFLATE_MAX_BYTES = 1024


async def decode_off_loop_if_large(body: bytes, decode: Callable[..., T], *args: Any) -> T:
    """``decode(body, *args)``, on the event loop for a small body, else in a thread."""
    if len(body) <= INLINE_DECODE_MAX_BYTES:
        return decode(body, *args)
    return await asyncio.to_thread(decode, body, *args)


@dataclass
class CallLabels:
    """Labels of one inference call, filled in as the handler learns them."""

    model: str
    version: str = ""
    code: int = 200
    #: The model version serving this call; released when the call ends.
    held: ModelVersion | None = None

    def hold(self, target: ModelVersion) -> ModelVersion:
        """Label the call with the version that serves it, and keep it loaded until the end."""
        self.held, self.version = target, str(target.version)
        return target


@dataclass
class RuntimeState:
    settings: RuntimeSettings
    repository: ModelRepository
    predictor: Predictor
    metrics: RuntimeMetrics
    registry: CollectorRegistry
    tracer: trace.Tracer

    @asynccontextmanager
    async def measure(self, protocol: str, model: str) -> AsyncIterator[CallLabels]:
        """Count and time one inference request, whatever its outcome; release what it held."""
        labels = CallLabels(model=model)
        started = time.perf_counter()
        in_flight = self.metrics.requests_in_flight
        in_flight.inc()
        try:
            yield labels
        except InferenceServerError as exc:
            labels.code = exc.status_code
            if labels.held is not None:
                exc.served_headers = {
                    **exc.served_headers,
                    "X-Model-Name": labels.held.model,
                    "X-Model-Version": labels.version,
                }
            elif model in self.repository.names():  # known, but no version could answer
                exc.served_headers = {**exc.served_headers, "X-Model-Name": model}
            raise
        except asyncio.CancelledError:  # not an Exception: its client or the server went
            labels.code = ClientClosedRequest.status_code
            raise
        except Exception:
            labels.code = 500
            raise
        finally:
            in_flight.dec()
            if labels.held is not None:
                self.repository.release(labels.held)
            # Unknown model names would make the label set unbounded: bucket them.
            model_label = model if model in self.repository.names() else "_unknown"
            self.metrics.requests.labels(
                model_label, labels.version, protocol, str(labels.code)
            ).inc()
            self.metrics.request_duration.labels(model_label, protocol).observe(
                time.perf_counter() - started, exemplar(current_trace_id())
            )


async def until_disconnected(request: AnyRequest) -> None:
    """Returns once the client of ``request``, whose body was read, has closed the connection.

    Past the body, an ASGI server's ``receive`` waits and then answers ``http.disconnect``
    (uvicorn: when the connection closes or the response is complete). Handlers are never
    cancelled when a client goes, so a queued request asks this (``runtime.batching``)."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.01)  # a server that answers at once: do not spin


def runtime_state(request: AnyRequest) -> RuntimeState:
    state: RuntimeState = request.app.state.runtime
    return state


async def read_body(request: AnyRequest, limit: int) -> bytes:
    """The request body, refusing it with 413 past ``limit`` bytes, inflated as its
    ``Content-Encoding`` says (in a worker thread past ``INLINE_INFLATE_MAX_BYTES``).

    Litestar enforces ``request_max_body_size`` too; this names the limit in the message.
    """
    length = request.headers.get("content-length")
    if length and length.isascii() and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(
            f"request body of {len(body)} bytes exceeds the limit of {limit} bytes"
        )
    encoding = request.headers.get("content-encoding")
    if not encoding or len(body) <= INLINE_INFLATE_MAX_BYTES:
        return decode_request_body(body, encoding, limit)
    # A few KiB of gzip can inflate to ``limit`` (16 MiB: tens of milliseconds).
    return await asyncio.to_thread(decode_request_body, body, encoding, limit)


def decode_request_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body inflated as its ``Content-Encoding`` says (``monitoring.body_encoding``, which
    the gateway's prediction log reads bodies with too), to at most ``limit`` bytes: a
    compression bomb answers 413, not an OOM; an encoding not taken 415, corrupt data 400."""
    try:
        return decode_body(body, content_encoding, limit)
    except UnsupportedEncoding as exc:
        raise UnsupportedMediaType(str(exc)) from None
    except InflatesPastLimit as exc:
        raise PayloadTooLarge(str(exc)) from None
    except CorruptBody as exc:
        raise BadRequest(str(exc)) from None


def served_headers(request: AnyRequest, target: ModelVersion) -> dict[str, str]:
    """Headers every inference response carries: who answered, and the caller's request id.

    The gateway reads ``X-Model-Name`` / ``X-Model-Version`` to tell clients (and its
    metrics) which version actually answered when the request named none.
    """
    headers = {"X-Model-Name": target.model, "X-Model-Version": str(target.version)}
    request_id = request.headers.get("x-request-id")
    if request_id:
        headers["X-Request-ID"] = request_id
    return headers


#: JSON bodies may come labelled as curl's default (``curl -d``), as TF-Serving allows.
JSON_CONTENT_TYPES = ("", "application/json", "application/x-www-form-urlencoded")


def content_type(request: AnyRequest) -> str:
    """The request's media type without parameters, lower-cased ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()
