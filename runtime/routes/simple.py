"""The simple describe/eval API: JSON tensors by feature name, or a PNG/JPEG image.

``POST /v1/models/{m}/eval`` takes the column form (``{"fare": [[7], [9]], ...}``) or the
single-instance form (``{"fare": 7, ...}``) and answers in the form it was asked. A model
whose ``config.yaml`` has an ``image:`` section also takes ``image/png`` and ``image/jpeg``
bodies, decoded and scaled as that section says.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import Response, get, post
from litestar.params import FromPath

from runtime.codecs import simple
from runtime.errors import UnsupportedMediaType
from runtime.images import CONTENT_TYPES, ImageConfig
from runtime.routes.state import (
    JSON_CONTENT_TYPES,
    AnyRequest,
    content_type,
    decode_off_loop_if_large,
    read_body,
    runtime_state,
    served_headers,
)


@get(
    ["/v1/models/{model:str}/describe", "/v1/models/{model:str}/versions/{version:str}/describe"],
    sync_to_thread=False,
)
def describe(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> dict[str, Any]:
    repository = runtime_state(request).repository
    target = repository.resolve(model, version)
    assert target.metadata is not None
    config = repository.entry(model).config
    return simple.describe(model, str(target.version), target.metadata, config.labels, config.image)


@post(
    ["/v1/models/{model:str}/eval", "/v1/models/{model:str}/versions/{version:str}/eval"],
    status_code=200,
)
async def evaluate(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> Response[dict[str, Any]]:
    state = runtime_state(request)
    async with state.measure("eval", model) as call:
        media_type = content_type(request)
        target = call.hold(state.repository.acquire(model, version))
        assert target.metadata is not None
        if media_type in JSON_CONTENT_TYPES:
            body = await read_body(request, state.settings.max_body_bytes)
            infer_request, form = await decode_off_loop_if_large(
                body, simple.decode_eval, target.metadata
            )
        elif media_type in CONTENT_TYPES:
            image = _image_config(
                state.repository.entry(model).config.image,
                model,
                media_type,
                state.settings.max_image_pixels,
            )
            body = await read_body(request, state.settings.max_body_bytes)
            infer_request, form = await decode_off_loop_if_large(
                body, simple.decode_eval_image, media_type, image, target.metadata
            )
        else:
            accepted = ", ".join(("application/json", *CONTENT_TYPES))
            raise UnsupportedMediaType(f"eval takes {accepted}; got '{media_type}'")
        infer_request.id = request.headers.get("x-request-id")
        response = await state.predictor.infer(target, infer_request)
        return Response(simple.encode_eval(response, form), headers=served_headers(request, target))


def _image_config(
    config: ImageConfig | None, model: FromPath[str], media_type: str, max_pixels: int
) -> ImageConfig:
    if config is None:
        raise UnsupportedMediaType(
            f"model '{model}' takes no images ({media_type}); its config.yaml has no 'image' "
            "section. Send application/json tensors instead"
        )
    return dataclasses.replace(config, max_pixels=min(config.max_pixels, max_pixels))


ROUTES = [describe, evaluate]
