"""The simple describe/eval API: JSON tensors by feature name, or a PNG/JPEG image.

``POST /v1/models/{m}/eval`` takes the column form (``{"fare": [[7], [9]], ...}``) or the
single-instance form (``{"fare": 7, ...}``) and answers in the form it was asked, naming it
in the ``X-Driftgate-Eval-Form`` header. A model
whose ``config.yaml`` has an ``image:`` section also takes ``image/png`` and ``image/jpeg``
bodies, decoded and scaled as that section says.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from litestar import Response, get, post
from litestar.params import FromPath

from runtime.codecs import simple
from runtime.errors import UnsupportedMediaType
from runtime.images import CONTENT_TYPES, ImageConfig, declared_pixels
from runtime.inference import InferenceRequest
from runtime.routes.state import (
    INLINE_DECODE_MAX_BYTES,
    JSON_CONTENT_TYPES,
    AnyRequest,
    content_type,
    decode_off_loop_if_large,
    read_body,
    runtime_state,
    served_headers,
    until_disconnected,
)
from runtime.tensors import ModelMetadata

#: Images declaring more pixels than this are decoded in a worker thread, whatever the size
#: of their body: a 5 KB PNG can declare 40 megapixels, about 0.7 s of decoding. 256 x 256
#: pixels decode in about a millisecond.
INLINE_DECODE_MAX_PIXELS = 256 * 256


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
    return simple.describe(model, str(target.version), target.metadata, config.labels, target.image)


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
                target.image,
                model,
                media_type,
                state.settings.max_image_pixels,
            )
            body = await read_body(request, state.settings.max_body_bytes)
            infer_request, form = await _decode_image(body, media_type, image, target.metadata)
        else:
            accepted = ", ".join(("application/json", *CONTENT_TYPES))
            raise UnsupportedMediaType(f"eval takes {accepted}; got '{media_type}'")
        infer_request.id = request.headers.get("x-request-id")
        response = await state.predictor.infer(
            target, infer_request, client_gone=lambda: until_disconnected(request)
        )
        headers = {**served_headers(request, target), **form.header}
        return Response(simple.encode_eval(response, form), headers=headers)


async def _decode_image(
    body: bytes, media_type: str, image: ImageConfig, metadata: ModelMetadata
) -> tuple[InferenceRequest, simple.EvalForm]:
    """``decode_eval_image``, on the event loop only for a small body of few pixels."""
    if len(body) <= INLINE_DECODE_MAX_BYTES and (
        declared_pixels(body, media_type) <= INLINE_DECODE_MAX_PIXELS
    ):
        return simple.decode_eval_image(body, media_type, image, metadata)
    return await asyncio.to_thread(simple.decode_eval_image, body, media_type, image, metadata)


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
