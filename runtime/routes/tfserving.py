"""TF-Serving REST API routes: model status, metadata and ``:predict``.

Spec: https://www.tensorflow.org/tfx/serving/api_rest. The ``:predict`` verb is part of
the last path segment (``/v1/models/titanic:predict``), so the handlers split it off.
Versions are addressed by number (``/versions/2``) or by label (``/labels/stable``).
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get, post
from litestar.exceptions import MethodNotAllowedException
from litestar.params import FromPath

from runtime.codecs import tfserving
from runtime.errors import BadRequest, ModelNotReady, NotFound, UnsupportedMediaType
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


@get(
    [
        "/v1/models/{model:str}",
        "/v1/models/{model:str}/versions/{version:str}",
        "/v1/models/{model:str}/labels/{version:str}",
    ],
    sync_to_thread=False,
)
def model_status(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> dict[str, Any]:
    if (version or model).endswith(":predict"):  # a GET to the predict endpoint
        raise MethodNotAllowedException(
            f"method GET is not allowed on {request.url.path}; use POST",
            headers={"Allow": "OPTIONS, POST"},
        )
    repository = runtime_state(request).repository
    if version is not None:
        target = repository.lookup(model, version)
        versions = [target] if target is not None else []
    else:
        versions = [v for v in repository.all_versions() if v.model == model]
        repository.entry(model)  # NotFound for an unknown model
        if not versions:  # an empty list hid why: a config.yaml error, no version folder
            raise ModelNotReady(repository.not_ready_message(model))
    return tfserving.model_status(
        model, [(str(v.version), v.state.value, v.error) for v in versions]
    )


@get(
    [
        "/v1/models/{model:str}/metadata",
        "/v1/models/{model:str}/versions/{version:str}/metadata",
        "/v1/models/{model:str}/labels/{version:str}/metadata",
    ],
    sync_to_thread=False,
)
def model_metadata(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> dict[str, Any]:
    target = runtime_state(request).repository.resolve(model, version)
    assert target.metadata is not None  # resolve() only returns ready versions
    return tfserving.model_metadata(model, str(target.version), target.metadata)


@post(["/v1/models/{model_verb:str}"], status_code=200)
async def predict_latest(
    request: AnyRequest, model_verb: FromPath[str]
) -> Response[dict[str, Any]]:
    model = _split_verb(model_verb)
    return await _predict(request, model, None)


@post(
    [
        "/v1/models/{model:str}/versions/{version_verb:str}",
        "/v1/models/{model:str}/labels/{version_verb:str}",
    ],
    status_code=200,
)
async def predict_version(
    request: AnyRequest, model: FromPath[str], version_verb: FromPath[str]
) -> Response[dict[str, Any]]:
    return await _predict(request, model, _split_verb(version_verb))


def _split_verb(segment: str) -> str:
    name, _, verb = segment.rpartition(":")
    if not name:
        raise NotFound(f"no such endpoint: expected '{segment}:predict'")
    if verb != "predict":
        raise NotFound(f"'{verb}' is not supported; the TF-Serving API here offers ':predict'")
    return name


async def _predict(
    request: AnyRequest, model: str, version: str | None
) -> Response[dict[str, Any]]:
    state = runtime_state(request)
    async with state.measure("tfserving", model) as call:
        media_type = content_type(request)
        if media_type not in JSON_CONTENT_TYPES:
            raise UnsupportedMediaType(f":predict takes application/json, got '{media_type}'")
        target = call.hold(state.repository.acquire(model, version))
        assert target.metadata is not None
        body = await read_body(request, state.settings.max_body_bytes)
        infer_request, form = await decode_off_loop_if_large(
            body, tfserving.decode_predict, target.metadata
        )
        served = target.metadata.extra.get("signature", tfserving.DEFAULT_SIGNATURE)
        if form.signature_name not in (None, served):
            raise BadRequest(
                f"signature_name '{form.signature_name}' is not served by model '{model}' "
                f"version {target.version}; it serves '{served}'"
            )
        response = await state.predictor.infer(
            target, infer_request, client_gone=lambda: until_disconnected(request)
        )
        return Response(
            tfserving.encode_predict(response, form), headers=served_headers(request, target)
        )


ROUTES = [model_status, model_metadata, predict_latest, predict_version]
