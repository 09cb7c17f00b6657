"""Operational endpoints: Prometheus ``/metrics`` and a model index for operators."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response, get

from monitoring.metrics import render_metrics
from runtime.errors import InferenceServerError
from runtime.routes.state import AnyRequest, runtime_state


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics(request: AnyRequest) -> Response[bytes]:
    state = runtime_state(request)
    body, content_type = render_metrics(state.registry, request.headers.get("accept"))
    return Response(body, media_type=content_type)


@get("/v1/models", media_type=MediaType.JSON, sync_to_thread=False)
def list_models(request: AnyRequest) -> dict[str, Any]:
    """Every model and version the runtime knows, with state and load error if any; a model
    whose config.yaml is broken, or that has no version folder, carries the reason in
    ``error``; version folders that do not load for their name (``007/``) are in
    ``warnings``."""
    state = runtime_state(request)
    models: dict[str, list[dict[str, Any]]] = {}
    for version in state.repository.all_versions():
        models.setdefault(version.model, []).append(
            {
                "version": str(version.version),
                "state": version.state.value,
                "format": version.format,
                "error": version.error,
            }
        )
    errors = state.repository.config_errors()
    listed = []
    for name in state.repository.names():  # a folder without versions too, saying why
        entry: dict[str, Any] = {"name": name, "versions": models.get(name, [])}
        try:
            if name in errors or name not in models:
                entry["error"] = errors.get(name) or state.repository.not_ready_message(name)
            misnamed = state.repository.entry(name).misnamed
        except InferenceServerError:  # removed from disk since names() was read
            continue
        if misnamed:
            entry["warnings"] = list(misnamed.values())
        listed.append(entry)
    return {"models": listed}
