"""HTTP routes of the runtime, one module per dialect, over one predictor."""

from __future__ import annotations

from runtime.routes import explain, oip, ops, simple, tfserving

ROUTE_HANDLERS = [
    *oip.ROUTES,
    *tfserving.ROUTES,
    *simple.ROUTES,
    *explain.ROUTES,
    ops.metrics,
    ops.list_models,
]
