"""Open Inference Protocol v2 (KServe / Triton REST) routes.

Spec: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
Health, server and model metadata, model readiness and ``infer``, with the binary tensor
data extension (``Inference-Header-Content-Length``) that ``tritonclient.http`` uses by
default.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get, post, route
from litestar.params import FromPath

from runtime.codecs import oip
from runtime.errors import UnsupportedMediaType
from runtime.routes.state import (
    JSON_CONTENT_TYPES,
    AnyRequest,
    content_type,
    decode_off_loop_if_large,
    read_body,
    runtime_state,
    served_headers,
    until_disconnected,
)

SERVER_NAME = "driftgate"
SERVER_VERSION = "0.1.0"
_INFER_CONTENT_TYPES = (*JSON_CONTENT_TYPES, "application/octet-stream")


@route("/v2", http_method=["GET", "HEAD"], sync_to_thread=False)
def server_metadata() -> dict[str, Any]:
    return oip.server_metadata(SERVER_NAME, SERVER_VERSION)


# HEAD too: load balancers probe with it (uvicorn sends no body).
@route("/v2/health/live", http_method=["GET", "HEAD"], sync_to_thread=False)
def live() -> dict[str, bool]:
    return {"live": True}


@route("/v2/health/ready", http_method=["GET", "HEAD"], sync_to_thread=False)
def ready(request: AnyRequest) -> Response[dict[str, bool]]:
    is_ready = runtime_state(request).repository.is_ready()
    return Response({"ready": is_ready}, status_code=200 if is_ready else 503)


@get(
    ["/v2/models/{model:str}", "/v2/models/{model:str}/versions/{version:str}"],
    sync_to_thread=False,
)
def model_metadata(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> dict[str, Any]:
    """Metadata of a model version. One that is loading or failed to load answers 200 too,
    with its ``state`` and ``error`` (``/ready`` is the check that answers 503), the platform
    its config.yaml or files say (what it reports once loaded; "" when they do not tell), and
    no inputs or outputs: they are read from the loaded model."""
    repository = runtime_state(request).repository
    target = repository.lookup(model, version)
    versions = [str(v.version) for v in repository.all_versions() if v.model == model]
    if target is None or target.metadata is None:
        entry = repository.entry(model)
        platform = ""
        if target is not None:
            state, error, platform = target.state.value, target.error, target.format or ""
        elif entry.config_error is not None:
            state, error = "UNAVAILABLE", entry.config_error
        elif entry.wanted:  # its versions are about to be loaded
            state, error = "LOADING", None
        else:  # it said LOADING forever
            state, error = "UNAVAILABLE", repository.not_ready_message(model)
        return {
            "name": model,
            "versions": versions,
            "platform": platform,
            "inputs": [],
            "outputs": [],
            "state": state,
            "error": error,
        }
    described = oip.model_metadata(model, versions, target.metadata.platform, target.metadata)
    described["state"] = target.state.value
    return described


@get(
    ["/v2/models/{model:str}/ready", "/v2/models/{model:str}/versions/{version:str}/ready"],
    sync_to_thread=False,
)
def model_ready(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> Response[dict[str, Any]]:
    """200 when the version serves; 503 with the load error when it does not."""
    repository = runtime_state(request).repository
    target = repository.lookup(model, version)
    if target is not None and target.ready:
        return Response({"name": model, "ready": True})
    if target is None:  # why no version serves: a config.yaml error, no version folder
        error = repository.not_ready_message(model)
    else:
        error = target.error or f"model '{model}' version {target.version} is loading"
    return Response({"name": model, "ready": False, "error": error}, status_code=503)


@post(
    ["/v2/models/{model:str}/infer", "/v2/models/{model:str}/versions/{version:str}/infer"],
    status_code=200,
)
async def infer(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> Response[bytes]:
    state = runtime_state(request)
    async with state.measure("v2", model) as call:
        media_type = content_type(request)
        if media_type not in _INFER_CONTENT_TYPES:
            raise UnsupportedMediaType(
                f"infer takes application/json (or application/octet-stream with the binary "
                f"tensor extension), got '{media_type}'"
            )
        target = call.hold(state.repository.acquire(model, version))
        body = await read_body(request, state.settings.max_body_bytes)
        infer_request, form = await decode_off_loop_if_large(
            body, oip.decode_infer_request, request.headers.get(oip.HEADER_LENGTH.lower())
        )
        response = await state.predictor.infer(
            target, infer_request, client_gone=lambda: until_disconnected(request)
        )
        payload, headers = oip.encode_infer_response(response, form)
        return Response(
            payload,
            headers={**headers, **served_headers(request, target)},
            media_type=headers["Content-Type"],
        )


ROUTES = [server_metadata, live, ready, model_metadata, model_ready, infer]
