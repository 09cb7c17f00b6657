"""The explain API: ``POST /v1/models/{m}[/versions/{v}]/explain``, per-row attributions.

The body is exactly eval's (``runtime.codecs.simple``: column or single-instance form),
decoded and validated the same way; the answer splits each row's prediction of one output
into a base value plus one attribution per original input (``runtime.explaining`` has the
rules, ``docs/explain.md`` the API). Query parameters: ``output`` and ``index`` (what is
explained), ``samples`` (Kernel SHAP coalitions per row) and ``background`` (rows).

The background comes from the version's latest reference profile
(``<repository>/<model>/references/<version>/profile-*.json``), sampled once per profile
and kept in a ``BackgroundCache`` on the app's state (``runtime.explain_background``);
without a profile the answer is 409 naming the command that builds one. The work is
CPU-heavy and runs in the predictor's thread pool, admitted apart from predictions
(``runtime.explain_slots``: a few at once, a few more waiting per version, beyond that
503), traced as ``explain {model}`` and timed by ``driftgate_explain_duration_seconds`` on
top of the request metrics every dialect has (protocol ``explain``). A client that hangs up
stops its explanation (499).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from litestar import Response, post
from litestar.params import FromPath

from drift.references import ReferenceStore
from explain.attributions import Attribution
from explain.frame import Frame, frame_rows
from runtime.codecs import simple
from runtime.errors import BadRequest, InferenceServerError, ModelNotReady, UnsupportedMediaType
from runtime.explain_background import BackgroundCache, background_for
from runtime.explaining import (
    ADDITIVITY_TOLERANCE,
    ExplainSettings,
    explain_rows,
    explained_output_of,
    frame_from_inputs,
    require_tabular,
)
from runtime.predictor import ModelCall, validate_off_loop_if_large
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
from runtime.tensors import ModelMetadata

log = logging.getLogger("driftgate.runtime.explain")

QUERY_PARAMETERS = ("output", "index", "samples", "background")
DEFAULT_SETTINGS = ExplainSettings()
_CACHE_STATE_KEY = "explain_backgrounds"


@post(
    ["/v1/models/{model:str}/explain", "/v1/models/{model:str}/versions/{version:str}/explain"],
    status_code=200,
)
async def explain(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> Response[dict[str, Any]]:
    state = runtime_state(request)
    async with state.measure("explain", model) as call:
        media_type = content_type(request)
        if media_type not in JSON_CONTENT_TYPES:
            raise UnsupportedMediaType(f"explain takes application/json, got '{media_type}'")
        asked_output, asked_index, settings = parse_query(dict(request.query_params))
        target = call.hold(state.repository.acquire(model, version))
        backend, metadata = target.backend, target.metadata
        if backend is None or metadata is None:
            raise ModelNotReady(f"model '{model}' version {target.version} is not loaded")
        served_version = str(target.version)
        require_tabular(metadata)
        output, index = explained_output_of(metadata, asked_output, asked_index)
        settings.require_samples_for(len(metadata.inputs))
        body = await read_body(request, state.settings.max_body_bytes)
        infer_request, form = await decode_off_loop_if_large(body, simple.decode_eval, metadata)
        validated = await validate_off_loop_if_large(metadata, infer_request.inputs)
        rows = frame_from_inputs(metadata, validated)
        settings.require_rows(frame_rows(rows))

        work = functools.partial(
            _explain_in_pool,
            store=ReferenceStore(state.settings.repository),
            cache=_background_cache(request),
            # Each model call takes the version's turn: never beside one of its merged
            # calls (``batching:``), which run one at a time (``runtime.call_turns``).
            call_model=state.predictor.explanation_call(target),
            metadata=metadata,
            rows=rows,
            model=model,
            version=served_version,
            output=output,
            index=index,
            settings=settings,
        )
        attributes: dict[str, str | int] = {
            "driftgate.model.name": model,
            "driftgate.model.version": served_version,
            "driftgate.explain.rows": frame_rows(rows),
            "driftgate.explain.n_samples": settings.n_samples,
            "driftgate.explain.background_rows": settings.background_rows,
        }
        with state.tracer.start_as_current_span(f"explain {model}", attributes=attributes) as span:
            started = time.perf_counter()
            try:
                # Kernel SHAP is CPU-bound: the predictor's pool, never the event loop.
                profile_id, attribution = await state.predictor.explain(
                    target, work, client_gone=lambda: until_disconnected(request)
                )
            except InferenceServerError:
                raise
            except Exception as exc:
                log.exception("explaining model %s version %s failed", model, served_version)
                raise InferenceServerError(
                    f"model '{model}' version {served_version} failed while being explained: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            finally:
                state.metrics.explain_duration.labels(model).observe(time.perf_counter() - started)
            span.set_attribute("driftgate.explain.method", attribution.method)
        answer = {
            "model": model,
            "version": served_version,
            "output": output,
            "index": index,
            **_explanations(attribution, form.single_instance),
            "background_rows": settings.background_rows,
            "n_samples": settings.n_samples,
            "reference": profile_id,
        }
        return Response(answer, headers=served_headers(request, target))


def parse_query(
    params: Mapping[str, str], defaults: ExplainSettings = DEFAULT_SETTINGS
) -> tuple[str | None, int | None, ExplainSettings]:
    """``(output, index, settings)`` from the query; unknown parameters are refused."""
    unknown = sorted(set(params) - set(QUERY_PARAMETERS))
    if unknown:
        raise BadRequest(
            f"unknown query parameter '{unknown[0]}'; explain takes {', '.join(QUERY_PARAMETERS)}"
        )
    index = _query_int(params, "index")
    if index is not None and index < 0:
        raise BadRequest(f"query parameter 'index' must be 0 or more, got {index}")
    settings = defaults.with_overrides(
        samples=_query_int(params, "samples"), background=_query_int(params, "background")
    )
    return params.get("output") or None, index, settings


def _query_int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be an integer, got '{raw}'") from None


def _explanations(attribution: Attribution, single_instance: bool) -> dict[str, Any]:
    """method, base value, per-row explanations (one object for a single instance) and the
    additivity check."""
    explanations = [
        {
            "prediction": float(prediction),
            "attributions": dict(zip(attribution.features, map(float, values), strict=True)),
        }
        for prediction, values in zip(attribution.predictions, attribution.values, strict=True)
    ]
    return {
        "method": attribution.method,
        "base_value": attribution.base_value,
        "explanations": explanations[0] if single_instance else explanations,
        "additivity_error": attribution.additivity_error(),
        "tolerance": ADDITIVITY_TOLERANCE,
    }


# -- the background ------------------------------------------------------------------------


def _background_cache(request: AnyRequest) -> BackgroundCache:
    """The app's cache, created with its first explain request (app state, not a global)."""
    app_state = request.app.state
    cache = app_state.get(_CACHE_STATE_KEY)
    if not isinstance(cache, BackgroundCache):
        cache = BackgroundCache()
        app_state[_CACHE_STATE_KEY] = cache
    return cache


def _explain_in_pool(
    stop: threading.Event,
    *,
    store: ReferenceStore,
    cache: BackgroundCache,
    call_model: ModelCall,
    metadata: ModelMetadata,
    rows: Frame,
    model: str,
    version: str,
    output: str,
    index: int | None,
    settings: ExplainSettings,
) -> tuple[str, Attribution]:
    """``(profile id, attribution)``; ``stop``: the client hung up, stop before the next
    model call."""
    profile_id, background = background_for(
        store, cache, metadata, model=model, version=version, settings=settings
    )
    attribution = explain_rows(
        call_model,
        metadata,
        rows,
        background,
        output=output,
        index=index,
        settings=settings,
        stop=stop,
    )
    return profile_id, attribution


ROUTES = [explain]
