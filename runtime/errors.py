"""Errors the runtime raises, each carrying the HTTP status it maps to.

One base class, one handler (see ``runtime.app``): every error a client can cause is a
``RuntimeErrorWithStatus`` subclass whose message names the problem (which input, what was
expected, what arrived). Anything else that escapes a handler is a bug and answers 500.

    InferenceServerError (status 500)
    ├── BadRequest            400  malformed body, unknown/missing input, wrong shape/dtype, NaN
    ├── NotFound              404  unknown model or version
    ├── PayloadTooLarge       413  body over the configured limit
    ├── UnsupportedMediaType  415  a content type the endpoint does not take
    ├── ModelNotReady         503  known model whose version is loading or failed to load
    ├── ServiceOverloaded     503  too many wait for a batch or a thread (``Retry-After: 1``)
    ├── ClientClosedRequest   499  the client hung up while its request waited in a queue
    └── BackendUnavailable    500  a framework or ``java`` is missing (names what to install)

499 is nginx's "client closed request": nobody reads that answer, but the runtime's request
metrics count it under that code.
"""

from __future__ import annotations

#: The longest message an error carries. Messages quote what the client sent (its input
#: names, its values); a body of 200,000 unknown names must not come back as 2 MB of error.
MAX_MESSAGE_CHARS = 2_000


class InferenceServerError(Exception):
    """Base of every error the runtime reports to a client."""

    status_code = 500

    def __init__(self, message: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            cut = len(message) - MAX_MESSAGE_CHARS
            message = f"{message[:MAX_MESSAGE_CHARS]}... ({cut} more characters)"
        super().__init__(message)
        self.message = message
        #: ``X-Model-Name`` / ``X-Model-Version`` of the version the request reached, so
        #: that a refusal says which model refused it (the gateway's labels read them).
        self.served_headers: dict[str, str] = {}


class BadRequest(InferenceServerError):
    status_code = 400


class NotFound(InferenceServerError):
    status_code = 404


class PayloadTooLarge(InferenceServerError):
    status_code = 413


class UnsupportedMediaType(InferenceServerError):
    status_code = 415


class ModelNotReady(InferenceServerError):
    status_code = 503


class ServiceOverloaded(InferenceServerError):
    """Too much queued already: try again shortly (here or, through the gateway, elsewhere)."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.served_headers["Retry-After"] = str(retry_after_s)


class ClientClosedRequest(InferenceServerError):
    status_code = 499


class BackendUnavailable(InferenceServerError):
    """A backend's framework (or the JVM for PMML) is not installed."""

    status_code = 500

    @classmethod
    def missing_module(cls, module: str, extra: str) -> BackendUnavailable:
        return cls(
            f"the Python module '{module}' is not installed; "
            f"install it with: pip install 'driftgate[{extra}]'"
        )
